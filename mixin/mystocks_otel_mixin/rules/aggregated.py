"""Aggregated: many alerts at once point at one cause."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL
from mystocks_otel_mixin.lib.rulekit import Alert

_FIRING = 'alertstate="firing", severity=~"critical|warning"'
#: The categories on the request path: trouble in two of them at once is an incident.
SERVICE_CATEGORIES = ("api", "database", "cache", "websocket", "market_data", "health")
#: Alerts that name a cause and page by themselves: symptoms across categories then follow.
CAUSES = "PostgreSQLDown|RedisDown|ApiJobDown|ApiTargetDown|ApiTargetFlapping|ApiTargetAbsent"


def records(cfg: MixinConfig) -> None:
    return None


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    t, q = cfg.thresholds, PromQL()  # ALERTS carries the rules' own job label
    unknown = set(SERVICE_CATEGORIES) - set(cfg.labels.categories)
    if unknown:
        raise ValueError(f"rules/aggregated.py counts categories {sorted(unknown)} missing from labels.categories")
    many, areas = t.aggregated_alerts_firing, t.aggregated_categories_degraded
    symptoms = q.sel("ALERTS", f'{_FIRING}, category!~"aggregated|meta"')
    service = q.sel("ALERTS", f'{_FIRING}, job="{cfg.app_job}", category=~"{"|".join(SERVICE_CATEGORIES)}"')
    causes = q.sel("ALERTS", f'alertstate="firing", alertname=~"{CAUSES}"')
    return (
        Alert(
            name="MultipleAlertsActive", link_labels=(),
            expr=f"count({symptoms}) >= {many}",
            for_="5m",
            severity="warning", category="aggregated", priority="P1", team="platform",
            summary="{{ $value }} alerts are firing at once.",
            description="{{ $value }} critical/warning alerts have been firing together for 5 minutes: look for a "
            "common cause before working them one by one.",
            threshold=f"≥ {many} warning/critical alerts firing for 5m",
            why=f"{many} alerts at once rarely have {many} independent causes. This one says so, and routing "
            "groups them, so on-call starts at the cause.",
            checks=("The Active Alerts panel: which category fired first?",
             "Shared dependencies (PostgreSQL, Redis, the network) and the last deploy.",
             "Inhibition: once the cause is found, silence the symptoms."),
        ),
        Alert(
            name="ServiceDegradation",
            expr=f"count by (job) (count by (job, category) ({service})) >= {areas}\nunless on (job) {causes}",
            for_="1m", severity="critical", category="aggregated", priority="P0", team="platform",
            summary="MyStocks is degraded in {{ $value }} areas at once.",
            description="Warning or critical alerts are firing in {{ $value }} service categories (API, database, "
            "cache, WebSocket, market data, health) for a minute.",
            threshold=f"alerts firing in ≥ {areas} service categories for 1m",
            why="Two parts of the request path in trouble together (say the API and the database) is "
            "an incident even when each alert alone is only a warning: page. Not when a known "
            "cause already pages (PostgreSQL, Redis or the API down): its symptoms span "
            "categories by nature, and ALERTS does not know Alertmanager's inhibitions, so "
            "the rule leaves that case out itself (and Alertmanager inhibits it too). `for: 1m`: "
            "the alerts it counts have already waited out their own `for`; five more minutes on "
            "top would only delay a P0.",
            checks=("The Active Alerts panel: which categories, and which fired first?",
             "The dependency the categories share (database or cache behind a slow API).",
             "Declare an incident and post a status update if users are affected."),
        ),
    )
