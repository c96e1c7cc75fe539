"""The Prometheus rules, one module per alert category (kubernetes-mixin's grouping).

``rules/<category>.py`` holds that category's recording rules (``records(cfg)``) and alerts
(``alerts(cfg)``) together; ``alerts/tests/<category>.yml`` holds its promtool scenarios.
:func:`generate` renders them into three files Prometheus loads:

- ``alerts/rules/mystocks-recording.yml``: recording rules for dashboards, alerts, retention;
- ``alerts/rules/mystocks-alerts.yml``: the alerts, one group per category;
- ``alerts/rules/mystocks-slo.yml``: SLI error ratios and multi-burn-rate alerts.
"""

from __future__ import annotations

from types import ModuleType

from mystocks_otel_mixin.config import DEFAULT, MixinConfig
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record, render_groups
from mystocks_otel_mixin.rules import (
    aggregated, api, business, cache, database, health, market_data, meta, slo, system, websocket,
)

#: category -> its module, in t.categories order (checked below).
MODULES: dict[str, ModuleType] = {
    "api": api, "database": database, "cache": cache, "websocket": websocket,
    "market_data": market_data, "system": system, "health": health, "business": business,
    "aggregated": aggregated, "slo": slo, "meta": meta,
}
assert tuple(MODULES) == DEFAULT.labels.categories, "one rules module per category, in labels.categories order"

RECORDING_FILE = "alerts/rules/mystocks-recording.yml"
ALERTS_FILE = "alerts/rules/mystocks-alerts.yml"
SLO_FILE = "alerts/rules/mystocks-slo.yml"
RULE_FILES = (RECORDING_FILE, ALERTS_FILE, SLO_FILE)


def recording_groups(cfg: MixinConfig) -> tuple[Group, ...]:
    """Every category's recording group but the SLOs' (they have their own file)."""
    groups = (m.records(cfg) for c, m in MODULES.items() if c != "slo")
    return tuple(g for g in groups if g is not None)


def alert_groups(cfg: MixinConfig) -> tuple[Group, ...]:
    """The non-SLO alerts, one group per category."""
    return tuple(Group(f"mystocks-{c.replace('_', '-')}.alerts", alerts)
                 for c, m in MODULES.items() if c != "slo" and (alerts := m.alerts(cfg)))


def slo_groups(cfg: MixinConfig) -> tuple[Group, ...]:
    return (slo.records(cfg), Group("mystocks-slo.alerts", slo.alerts(cfg)))


def _check_categories(cfg: MixinConfig) -> None:
    if set(cfg.labels.categories) != set(MODULES):
        raise ValueError(f"labels.categories={','.join(cfg.labels.categories)}: expected the rules modules' "
                         f"categories ({','.join(MODULES)}): one rules/<category>.py per category")


def all_alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    """Every alert, in category order; checks each lives in its category's module and
    carries labels from cfg.labels."""
    _check_categories(cfg)
    alerts = []
    for category, module in MODULES.items():
        for a in module.alerts(cfg):
            if a.category != category:
                raise ValueError(f"{a.name}: category {a.category!r} but defined in rules/{category}.py")
            a.check(cfg)
            alerts.append(a)
    names = [a.name for a in alerts]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"alert names defined twice: {sorted(duplicates)}")
    return tuple(alerts)


def all_records(cfg: MixinConfig) -> tuple[Record, ...]:
    groups = recording_groups(cfg) + slo_groups(cfg)
    return tuple(r for g in groups for r in g.rules if isinstance(r, Record))


def generate(cfg: MixinConfig) -> dict[str, str]:
    all_alerts(cfg)  # checks names and categories
    return {
        RECORDING_FILE: render_groups(
            recording_groups(cfg),
            "Recording rules (level:metric:operations). They feed the dashboards and the alerts, "
            "and the job:* / job_*:* series are the aggregates kept for a year (docs/ALERTING.md).",
            cfg,
        ),
        ALERTS_FILE: render_groups(
            alert_groups(cfg),
            "MyStocks alerts, one group per category. The comment above each rule gives the "
            "reasoning for its threshold; docs/runbooks.md says what to do.",
            cfg,
        ),
        SLO_FILE: render_groups(
            slo_groups(cfg),
            "30-day SLOs: SLI error ratios over every burn-rate window, and multiwindow "
            "multi-burn-rate alerts (page: 14.4x 1h/5m or 6x 6h/30m; ticket: 3x 1d/2h or 1x 3d/6h).",
            cfg,
        ),
    }
