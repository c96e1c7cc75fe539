"""SLO parity: the SLO dashboard's budget-remaining panel and the error-budget-exhausted alert
read the same budget from the same config, and agree on where "spent" starts (zero)."""

from __future__ import annotations

import json

import pytest
import yaml

from mystocks_otel_mixin import config, dashboards, rules
from mystocks_otel_mixin.lib.promql import num
from mystocks_otel_mixin.rules import slo as slo_rules

CUSTOM = config.DEFAULT.with_slo_objectives({"api-availability": 0.995, "market-data-freshness": 0.98})


def _board(cfg):
    return json.loads(dashboards.generate(cfg)["dashboards/mystocks-slo.json"])


def _alerts(cfg) -> dict[str, dict]:
    text = rules.generate(cfg)[rules.SLO_FILE]
    return {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.parametrize("cfg", [config.DEFAULT, CUSTOM], ids=["default", "custom-objectives"])
def test_budget_remaining_panel_per_slo_matches_the_exhausted_alert(cfg):
    panels = {p["title"]: p for p in _board(cfg)["panels"]}
    alerts = _alerts(cfg)
    records = {(r["record"], r.get("labels", {}).get("slo")): r["expr"]
               for g in yaml.safe_load(rules.generate(cfg)[rules.SLO_FILE])["groups"] for r in g["rules"]
               if "record" in r}
    for slo in cfg.slos:
        panel = panels[f"{slo.name}: error budget remaining ({slo_rules.PERIOD})"]
        assert panel["type"] == "stat" and panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["color"] == "red" and steps[1]["value"] == 0  # red below zero
        (target,) = panel["targets"]
        assert target["expr"].startswith("1 - (") and target["expr"].endswith(f") / {num(slo.error_budget)}")
        assert slo_rules.exhausted_alert_name(slo) in panel["description"]
        remaining = records[(slo_rules.BUDGET_REMAINING, slo.name)]
        assert remaining.endswith(f" / {num(slo.error_budget)}"), remaining
        alert = alerts[slo_rules.exhausted_alert_name(slo)]
        assert alert["expr"].startswith(f'{slo_rules.BUDGET_REMAINING}{{slo="{slo.name}"}} <= 0'), alert["expr"]
