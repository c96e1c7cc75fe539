"""Aggregated: many alerts at once point at one cause."""

from __future__ import annotations

from mystocks_otel_mixin import config as c
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, num, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

_ALERTS_FIRING = 'ALERTS{alertstate="firing", severity=~"critical|warning"'
#: Alerts that name a cause and page by themselves: symptoms across categories then follow.
CAUSES = "PostgreSQLDown|RedisDown|ApiJobDown|ApiTargetDown|ApiTargetAbsent"


def records(cfg: MixinConfig) -> None:
    return None


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    return (
        Alert(
            name="MultipleAlertsActive", link_labels=(),
            expr=f'count({_ALERTS_FIRING}, category!~"aggregated|meta"}}) >= 5', for_="5m",
            severity="warning", category="aggregated", priority="P1", team="platform",
            summary="{{ $value }} alerts are firing at once.",
            description="{{ $value }} critical/warning alerts have been firing together for 5 minutes: look for a "
            "common cause before working them one by one.",
            threshold="≥ 5 warning/critical alerts firing for 5m",
            why="Five alerts at once rarely have five independent causes. This one says so, and routing "
            "groups them, so on-call starts at the cause.",
            checks=("The Active Alerts panel: which category fired first?",
             "Shared dependencies (PostgreSQL, Redis, the network) and the last deploy.",
             "Inhibition: once the cause is found, silence the symptoms."),
        ),
        Alert(
            name="ServiceDegradation",
            expr=f'count by (job) (count by (job, category) ({_ALERTS_FIRING}, job="{cfg.app_job}", '
            f'category=~"api|database|cache|websocket|market_data|health"}})) >= 2\n'
            f'unless on (job) ALERTS{{alertstate="firing", alertname=~"{CAUSES}"}}',
            for_="1m", severity="critical", category="aggregated", priority="P0", team="platform",
            summary="MyStocks is degraded in {{ $value }} areas at once.",
            description="Warning or critical alerts are firing in {{ $value }} service categories (API, database, "
            "cache, WebSocket, market data, health) for a minute.",
            threshold="alerts firing in ≥ 2 service categories for 1m",
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
