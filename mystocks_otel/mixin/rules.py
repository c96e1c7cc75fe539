"""Generates the Prometheus rule files and the alerting docs from one definition of each rule.

``generate()`` returns repository-relative path -> text for:

- ``alerts/rules/mystocks-recording.yml``: recording rules for dashboards, alerts, retention;
- ``alerts/rules/mystocks-alerts.yml``: the alerts, one group per category;
- ``alerts/rules/mystocks-slo.yml``: SLI error ratios and multi-burn-rate alerts;
- ``docs/runbooks.md`` and ``docs/ALERTING.md`` (mixin.rules_docs), so they never drift.
"""

from __future__ import annotations

from mystocks_otel.mixin import alerts_platform, alerts_service, alerts_slo, recording, rules_docs
from mystocks_otel.mixin.rulekit import CATEGORIES, Alert, Group, Record, render_groups

RECORDING_FILE = "alerts/rules/mystocks-recording.yml"
ALERTS_FILE = "alerts/rules/mystocks-alerts.yml"
SLO_FILE = "alerts/rules/mystocks-slo.yml"
RULE_FILES = (RECORDING_FILE, ALERTS_FILE, SLO_FILE)


def alert_groups() -> tuple[Group, ...]:
    """The non-SLO alerts, one group per category in a stable order."""
    alerts = alerts_service.ALERTS + alerts_platform.ALERTS
    return tuple(
        Group(f"mystocks-{category.replace('_', '-')}.alerts",
              tuple(a for a in alerts if a.category == category))
        for category in CATEGORIES
        if any(a.category == category for a in alerts)
    )


def all_alerts() -> tuple[Alert, ...]:
    groups = alert_groups() + alerts_slo.groups()
    return tuple(r for g in groups for r in g.rules if isinstance(r, Alert))


def all_records() -> tuple[Record, ...]:
    groups = recording.groups() + alerts_slo.groups()
    return tuple(r for g in groups for r in g.rules if isinstance(r, Record))


def _check_unique() -> None:
    names = [a.name for a in all_alerts()]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"alert names defined twice: {sorted(duplicates)}")


def generate() -> dict[str, str]:
    _check_unique()
    return {
        RECORDING_FILE: render_groups(
            recording.groups(),
            "Recording rules (level:metric:operations). They feed the dashboards and the alerts, "
            "and the job:* / job_*:* series are the aggregates kept for a year (docs/ALERTING.md).",
        ),
        ALERTS_FILE: render_groups(
            alert_groups(),
            "MyStocks alerts, one group per category. The comment above each rule gives the "
            "reasoning for its threshold; docs/runbooks.md says what to do.",
        ),
        SLO_FILE: render_groups(
            alerts_slo.groups(),
            "30-day SLOs: SLI error ratios over every burn-rate window, and multiwindow "
            "multi-burn-rate alerts (page: 14.4x 1h/5m or 6x 6h/30m; ticket: 3x 1d/2h or 1x 3d/6h).",
        ),
        **rules_docs.generate(all_alerts(), all_records()),
    }
