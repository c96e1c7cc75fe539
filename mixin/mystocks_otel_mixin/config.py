"""The one config that drives alerts, recording rules and dashboards (kubernetes-mixin style).

Two layers:

- module constants: thresholds, SLOs, the trading calendar and the label vocabularies
  (severities, categories, priorities, teams). They are the defaults, and what panels and
  alerts share: a threshold on a panel is the alert's threshold.
- :class:`MixinConfig`: the settings a deployment overrides at render time
  (``mystocks-otel render --grafana-url ... --app-job ... --slo api-availability=0.995``).
  Every generator receives one as ``generate(cfg)``; nothing patches this module.

Each alert's reasoning is written beside it (``mixin/rules/<category>.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

#: Prometheus job names (prometheus/prometheus.yml must agree; a test checks).
APP_JOB = "mystocks-api"
COLLECTOR_JOB = "otel-collector"
PROMETHEUS_JOB = "prometheus"
ALERTMANAGER_JOB = "alertmanager"

#: Where alerts link to. Overridable at render time; the defaults suit docker-compose.
GRAFANA_URL = "http://localhost:3000"
RUNBOOK_URL = "https://github.com/mystocks/mystocks-otel/blob/main/docs/runbooks.md"

#: The `service` label of each category's alerts (Alertmanager groups and inhibits on it, and
#: PagerDuty opens one incident per service): the thing that is broken, not the symptom.
SERVICE_BY_CATEGORY = {
    "api": "mystocks-api", "database": "postgresql", "cache": "redis", "websocket": "mystocks-api",
    "market_data": "market-data", "system": "mystocks-api", "health": "mystocks-api",
    "business": "mystocks-api", "aggregated": "mystocks-api", "slo": "mystocks-api",
    "meta": "monitoring",
}

# -- the label vocabularies Alertmanager routes on: the one place they are listed -------------
SEVERITIES = ("critical", "warning", "info")
#: One rules module (mixin/rules/<category>.py) and one promtool file (alerts/tests/<category>.yml)
#: per category, in this order.
CATEGORIES = (
    "api", "database", "cache", "websocket", "market_data", "system", "health", "business",
    "aggregated", "slo", "meta",
)
PRIORITIES = ("P0", "P1", "P2", "P3")
TEAMS = ("platform", "data", "performance")

#: Dashboard UIDs (stable: alerts link to them).
MAIN_DASHBOARD_UID = "mystocks-main"
SLO_DASHBOARD_UID = "mystocks-slo"


@dataclass(frozen=True)
class SLO:
    """A 30-day service-level objective, alerted on with multiwindow burn rates."""

    name: str  # the value of the slo="..." label on every SLO series
    objective: float  # e.g. 0.999
    description: str
    threshold_seconds: float | None = None  # for latency/freshness SLIs

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective


SLOS: tuple[SLO, ...] = (
    SLO("api-availability", 0.999, "Share of API requests answered without a 5xx."),
    SLO("api-latency", 0.99, "Share of API requests answered within 1 s.", threshold_seconds=1.0),
    SLO("market-data-freshness", 0.99,
        "Share of evaluations in which every feed's data is fresher than 60 s.",
        threshold_seconds=60.0),
)

#: The windows the SLI error ratio is recorded over, named for the recording rules.
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

#: (severity, long window, short window, burn-rate factor): Google SRE workbook, ch. 5.
BURN_RATE_ALERTS = (
    ("critical", "1h", "5m", 14.4),
    ("critical", "6h", "30m", 6.0),
    ("warning", "1d", "2h", 3.0),
    ("warning", "3d", "6h", 1.0),
)


def slo_error_ratio_record(window: str) -> str:
    """Recording rule for an SLO's error ratio over ``window`` (label ``slo``)."""
    return f"slo:sli_error:ratio_rate{window}"


# -- Alert thresholds shared with the dashboards (thresholds on panels = alert thresholds) -------
# Each one's reasoning is written next to the alert that uses it (mixin.alerts_*), and rendered
# into alerts/rules/*.yml as a comment and into docs/ALERTING.md.

API_LATENCY_P95_WARNING_SECONDS = 1.0  # the specification's own threshold
API_LATENCY_P95_CRITICAL_SECONDS = 2.5
API_ERROR_RATIO_WARNING = 0.01  # 5xx share of requests
API_ERROR_RATIO_CRITICAL = 0.05
#: Ratio alerts need at least this much traffic (per second) so one failure among a handful
#: of requests at night does not alert.
MIN_REQUEST_RATE = 0.1

DB_POOL_USAGE_WARNING = 0.8  # active / max connections
DB_POOL_USAGE_EXHAUSTED = 1.0
DB_SLOW_QUERY_RATIO_WARNING = 0.05
#: The statement timeout the backend runs with; the timeout-risk alert fires at half of it.
DB_STATEMENT_TIMEOUT_SECONDS = 10.0

CACHE_HIT_RATIO_WARNING = 0.8
CACHE_HIT_RATIO_CRITICAL = 0.5
#: Memory each cache may use: set it to Redis `maxmemory` (and the in-process cache's bound).
#: Shown on the dashboard only: a full LRU cache is healthy, so no alert compares against it.
CACHE_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024  # docker-compose's redis --maxmemory 128mb
#: Evictions per second that, with a hit ratio below CACHE_HIT_RATIO_WARNING, mean the cache
#: is too small for its working set.
CACHE_EVICTIONS_PER_SECOND_WARNING = 1.0

#: WebSocket connections one API process serves well (measure yours; see docs/ALERTING.md).
WEBSOCKET_CONNECTION_CAPACITY = 1000

MARKET_DATA_P95_WARNING_SECONDS = 1.0
ORDER_LATENCY_P95_WARNING_SECONDS = 0.5
ORDER_REJECTION_RATIO_WARNING = 0.1
DATA_COMPLETENESS_WARNING = 0.95
WEBSOCKET_ERROR_RATIO_WARNING = 0.05
#: Datasets that update continuously while the market is open (freshness SLO and StaleData).
REALTIME_DATASETS = ("quotes", "trades", "orderbook")
STALE_DATA_SECONDS = 120.0
#: The A-share trading sessions in UTC minutes since midnight, Monday-Friday: the morning
#: 09:30-11:30 and the afternoon 13:00-15:00 China Standard Time (01:30-03:30 and 05:00-07:00
#: UTC; China has no DST). The lunch break between them is closed, like nights and weekends.
#: The one place the calendar is defined: ``mystocks:trading_session:open`` is rendered from it,
#: and every market-data, business and freshness rule is gated on that series.
TRADING_SESSIONS_UTC_MINUTES = ((90, 210), (300, 420))
TRADING_DAYS = (1, 2, 3, 4, 5)  # day_of_week(): Monday-Friday
#: Kept for the dashboards: the first open and the last close.
TRADING_SESSION_UTC_MINUTES = (TRADING_SESSIONS_UTC_MINUTES[0][0], TRADING_SESSIONS_UTC_MINUTES[-1][1])
#: Exchange holidays (YYYY-MM-DD, China time = the UTC date of the session) on which the session
#: series stays closed: every gated rule, the freshness SLI included, is then quiet and spends
#: no budget. Empty by default: pass the year's calendar with `mystocks-otel render --holiday`
#: (repeatable), or silence gate=trading_session for an unplanned closure (docs/runbooks.md).
TRADING_HOLIDAYS: tuple[str, ...] = ()
#: Label set on every alert gated on the session, so that ONE silence covers an exchange
#: holiday or an unplanned closure, SLO burn alerts included (docs/runbooks.md).
SESSION_GATE_LABEL = ("gate", "trading_session")

CPU_PERCENT_WARNING, CPU_PERCENT_CRITICAL = 80.0, 95.0
MEMORY_PERCENT_WARNING, MEMORY_PERCENT_CRITICAL = 85.0, 95.0
DISK_PERCENT_WARNING, DISK_PERCENT_CRITICAL = 85.0, 95.0


@dataclass(frozen=True)
class MixinConfig:
    """What a deployment may override when rendering (``mystocks-otel render --help``).

    The defaults are the module constants above, which suit docker-compose.
    """

    grafana_url: str = GRAFANA_URL
    runbook_url: str = RUNBOOK_URL
    app_job: str = APP_JOB
    collector_job: str = COLLECTOR_JOB
    prometheus_job: str = PROMETHEUS_JOB
    alertmanager_job: str = ALERTMANAGER_JOB
    #: Grafana gets a Loki datasource only when one is named (dashboards/provisioning).
    loki_url: str | None = None
    slos: tuple[SLO, ...] = field(default=SLOS)
    holidays: tuple[str, ...] = TRADING_HOLIDAYS

    def __post_init__(self) -> None:
        for name in ("grafana_url", "runbook_url"):
            value = getattr(self, name)
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"{name}={value!r}: expected an http(s) URL")
            object.__setattr__(self, name, value.rstrip("/"))
        if self.loki_url is not None and not self.loki_url.startswith(("http://", "https://")):
            raise ValueError(f"loki_url={self.loki_url!r}: expected an http(s) URL")
        for name in ("app_job", "collector_job", "prometheus_job", "alertmanager_job"):
            value = getattr(self, name)
            if not value or any(ch in value for ch in '"\\{}\n'):
                raise ValueError(f"{name}={value!r}: expected a Prometheus job name")
        for day in self.holidays:
            try:
                date.fromisoformat(day)
            except (TypeError, ValueError):
                raise ValueError(f"holiday {day!r}: expected a date YYYY-MM-DD") from None
        for slo in self.slos:
            if not 0.0 < slo.objective < 1.0:
                raise ValueError(f"SLO {slo.name} objective {slo.objective!r}: expected 0 < x < 1")

    def slo(self, name: str) -> SLO:
        return next(s for s in self.slos if s.name == name)

    def with_slo_objectives(self, objectives: dict[str, float]) -> "MixinConfig":
        """A copy with some SLO objectives replaced (``{"api-availability": 0.995}``)."""
        known = {s.name for s in self.slos}
        unknown = sorted(set(objectives) - known)
        if unknown:
            raise ValueError(f"unknown SLO {', '.join(unknown)}: expected one of {', '.join(sorted(known))}")
        slos = tuple(replace(s, objective=objectives.get(s.name, s.objective)) for s in self.slos)
        return replace(self, slos=slos)


DEFAULT = MixinConfig()
