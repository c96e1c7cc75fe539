"""The live suite's test overlay changes timing only: no expr but the trading session, no threshold.

It may shorten the scrape and evaluation intervals, every rule's `for` and Alertmanager's
waits, and replace the trading-session rule with an always-open series. This runs on the
committed files, so a new rule or route is checked the day it is added.
"""

from __future__ import annotations

import copy

import yaml

from mystocks_otel_dev.stack import configs

from support import ROOT  # noqa: E402 - the checkout, found explicitly


def _strip_timing_rule(rule: dict) -> dict:
    out = {k: v for k, v in rule.items() if k != "for"}
    if configs.TRADING_SESSION_MARK in rule.get("record", ""):
        out["expr"] = "<trading session>"
    return out


def test_rules_overlay_changes_only_for_intervals_and_the_trading_session():
    files = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
    assert files
    replaced = 0
    for path in files:
        original = yaml.safe_load(path.read_text())
        overlay = configs.test_overlay_rules(original)
        for group, new_group in zip(original["groups"], overlay["groups"], strict=True):
            assert new_group["interval"] == configs.TEST_INTERVAL
            assert {k: v for k, v in group.items() if k not in ("rules", "interval")} == \
                {k: v for k, v in new_group.items() if k not in ("rules", "interval")}
            for rule, new in zip(group["rules"], new_group["rules"], strict=True):
                assert _strip_timing_rule(rule) == _strip_timing_rule(new), rule.get("alert", rule.get("record"))
                if "for" in rule:
                    assert configs.seconds(new["for"]) <= configs.seconds(rule["for"])
                    assert abs(configs.seconds(new["for"]) * configs.TEST_FOR_DIVISOR
                               - configs.seconds(rule["for"])) < 0.05, "shortened in proportion"
                if configs.TRADING_SESSION_MARK in rule.get("record", ""):
                    assert new["expr"] == "vector(1)"
                    replaced += 1
    assert replaced >= 1, "the trading-session rule was not found: the market-data scenarios need it"


def test_prometheus_overlay_changes_only_the_intervals():
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    overlay = configs.test_overlay_prometheus(config)
    strip = copy.deepcopy(overlay)
    for key in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
        assert strip["global"].pop(key) == configs.TEST_INTERVAL
        config["global"].pop(key, None)
    for job in config.get("scrape_configs", []):
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    assert strip == config


def test_alertmanager_overlay_changes_only_the_waits():
    from mystocks_otel_dev.stack.configs import test_overlay_alertmanager

    template = (ROOT / "alerts" / "alertmanager" / "alertmanager.yml.tmpl").read_text()
    # The routing tree alone: it has no ${...} placeholders, so it parses without the render step.
    route = yaml.safe_load("route:" + template.split("\nroute:", 1)[1].split("\nreceivers:")[0])
    overlay = test_overlay_alertmanager(route)

    def strip(node: dict) -> dict:
        """Everything but the waits; a zero group_wait must stay zero (critical: at once)."""
        out = {k: v for k, v in node.items() if k not in ("group_wait", "group_interval", "routes")}
        if "group_wait" in node:
            out["sends_at_once"] = configs.seconds(node["group_wait"]) == 0
        out["routes"] = [strip(child) for child in node.get("routes", [])]
        return out

    assert strip(route["route"]) == strip(overlay["route"])

    def waits(node: dict):
        yield node
        for child in node.get("routes", []):
            yield from waits(child)

    for node in waits(overlay["route"]):
        if "group_wait" in node:
            assert configs.seconds(node["group_wait"]) <= configs.seconds(configs.TEST_GROUP_WAIT)
