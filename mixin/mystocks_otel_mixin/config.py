"""The one config that drives alerts, recording rules, dashboards, docs and Alertmanager routing.

Everything a deployment may change is a field of :class:`MixinConfig`, a frozen dataclass with
nested groups:

- ``thresholds`` (:class:`Thresholds`): every alert threshold. Panels draw the same numbers, and
  alert prose (summary, description, the docs' threshold column) is written from them, so a
  changed threshold changes the expression and the text together;
- ``sessions`` (:class:`Sessions`): the trading calendar every market-data rule is gated on;
- ``labels`` (:class:`Labels`): the label vocabularies Alertmanager routes on (severities,
  categories, priorities, teams, the service of each category);
- ``routing`` (:class:`Routing`): the receivers built from that vocabulary
  (``mystocks_otel_mixin.routing`` renders alerts/alertmanager/alertmanager.yml.tmpl from it);
- the jobs, URLs and SLOs at the top level.

``mystocks-otel render`` overrides any field: ``--set thresholds.cache_hit_ratio_warning=0.7``,
``--config deploy.yaml`` (the same keys, nested), or the named options (``--app-job``, ``--slo``,
``--holiday``). ``mystocks-otel render --show-config`` lists every key with its value. Every
generator receives one config as ``generate(cfg)``; nothing reads a module-level threshold.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from mystocks_otel.catalog import LATENCY_BUCKETS

#: Prometheus job names (prometheus/prometheus.yml must agree; a test checks): the defaults of
#: MixinConfig's job fields.
APP_JOB = "mystocks-api"
COLLECTOR_JOB = "otel-collector"
PROMETHEUS_JOB = "prometheus"
ALERTMANAGER_JOB = "alertmanager"

#: Dashboard UIDs (stable: alerts and Alertmanager's fallback links point at them).
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


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds, shared with the dashboards (a threshold on a panel is the alert's).

    Each one's reasoning is written next to the alert that uses it (``rules/<category>.py``),
    rendered into alerts/rules/*.yml as a comment and into docs/ALERTING.md.
    """

    api_latency_p95_warning_seconds: float = 1.0  # the specification's own threshold
    api_latency_p95_critical_seconds: float = 2.5
    api_error_ratio_warning: float = 0.01  # 5xx share of requests
    api_error_ratio_critical: float = 0.05
    #: Ratio, quantile and burn-rate alerts need this much traffic (events per second), so one
    #: failure among a handful of requests at night does not alert.
    min_request_rate: float = 0.1
    #: The floor of the rarer events: order rejections and WebSocket connections opened.
    min_rare_event_rate: float = 0.01

    db_pool_usage_warning: float = 0.8  # active / max connections
    db_pool_usage_exhausted: float = 1.0
    db_slow_query_ratio_warning: float = 0.05
    #: Share of statements that raise (the API's 5xx bar by default: a failed statement is a
    #: failed request).
    db_error_ratio_warning: float = 0.01
    #: The statement timeout the backend runs with; the timeout-risk alert fires at half of it.
    db_statement_timeout_seconds: float = 10.0

    cache_hit_ratio_warning: float = 0.8
    cache_hit_ratio_critical: float = 0.5
    #: Memory each cache may use: Redis `maxmemory` (and the in-process cache's bound).
    #: Shown on the dashboard only: a full LRU cache is healthy.
    cache_memory_limit_bytes: int = 128 * 1024 * 1024  # docker-compose's redis --maxmemory 128mb
    #: Evictions per second that, with a hit ratio below the warning, mean the cache is too
    #: small for its working set.
    cache_evictions_per_second_warning: float = 1.0
    redis_error_ratio_warning: float = 0.01

    #: WebSocket connections one API process serves well (measure yours; see docs/ALERTING.md).
    websocket_connection_capacity: int = 1000
    websocket_capacity_warning: float = 0.8  # share of the capacity
    websocket_capacity_critical: float = 0.95
    websocket_error_ratio_warning: float = 0.05

    market_data_p95_warning_seconds: float = 1.0
    market_data_feed_errors_per_minute: float = 5.0
    order_latency_p95_warning_seconds: float = 0.5
    order_rejection_ratio_warning: float = 0.1
    data_completeness_warning: float = 0.95
    data_anomalies_per_minute: float = 1.0
    data_anomaly_spike_factor: float = 3.0
    #: Real-time data older than this, market open, is stale (twice the freshness SLO's 60 s).
    stale_data_seconds: float = 120.0

    cpu_percent_warning: float = 80.0
    cpu_percent_critical: float = 95.0
    memory_percent_warning: float = 85.0
    memory_percent_critical: float = 95.0
    disk_percent_warning: float = 85.0
    disk_percent_critical: float = 95.0
    restarts_in_30m: int = 3
    dependency_availability_critical: float = 0.5
    #: An API instance answering fewer of its scrapes than this over 10 minutes, in several
    #: outages, is crash-looping (ApiTargetFlapping).
    target_availability_critical: float = 0.75
    #: In-session request rate below this share of its usual level is a traffic collapse
    #: (ApiTrafficCollapse) ...
    traffic_collapse_ratio: float = 0.1
    #: ... when the usual level is at least this many requests per second (a quiet app's
    #: empty minute is not an outage).
    traffic_collapse_min_usual_rate: float = 1.0

    aggregated_alerts_firing: int = 5
    aggregated_categories_degraded: int = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"thresholds.{f.name}={value!r}: expected a number >= 0")
            if (f.name.endswith(("_ratio_warning", "_ratio_critical", "_usage_warning", "_usage_exhausted",
                                 "_capacity_warning", "_capacity_critical", "_completeness_warning",
                                 "_availability_critical", "_collapse_ratio"))
                    and not 0 < value <= 1):
                raise ValueError(f"thresholds.{f.name}={value!r}: expected a ratio 0 < x <= 1")
        pairs = (("api_latency_p95_warning_seconds", "api_latency_p95_critical_seconds"),
                 ("api_error_ratio_warning", "api_error_ratio_critical"),
                 ("db_pool_usage_warning", "db_pool_usage_exhausted"),
                 ("websocket_capacity_warning", "websocket_capacity_critical"),
                 ("cpu_percent_warning", "cpu_percent_critical"),
                 ("memory_percent_warning", "memory_percent_critical"),
                 ("disk_percent_warning", "disk_percent_critical"))
        for warning, critical in pairs:
            if getattr(self, warning) > getattr(self, critical):
                raise ValueError(f"thresholds.{warning}={getattr(self, warning)!r}: expected at most "
                                 f"thresholds.{critical} ({getattr(self, critical)!r})")
        if self.cache_hit_ratio_critical > self.cache_hit_ratio_warning:
            raise ValueError(f"thresholds.cache_hit_ratio_critical={self.cache_hit_ratio_critical!r}: "
                             f"expected at most thresholds.cache_hit_ratio_warning ({self.cache_hit_ratio_warning!r})")


@dataclass(frozen=True)
class Sessions:
    """The trading calendar: ``mystocks:trading_session:open`` is rendered from it, and every
    market-data, business and freshness rule is gated on that series."""

    #: The A-share sessions in UTC minutes since midnight: the morning 09:30-11:30 and the
    #: afternoon 13:00-15:00 China Standard Time (01:30-03:30 and 05:00-07:00 UTC; China has
    #: no DST). The lunch break between them is closed, like nights and weekends.
    utc_minutes: tuple[tuple[int, int], ...] = ((90, 210), (300, 420))
    #: day_of_week(): Monday-Friday.
    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    #: Exchange holidays (YYYY-MM-DD, China time = the UTC date of the session) on which the
    #: session series stays closed: every gated rule, the freshness SLI included, is quiet and
    #: spends no budget. Empty by default: pass the year's calendar (``--holiday``, repeatable).
    holidays: tuple[str, ...] = ()
    #: Datasets that update continuously while the market is open (freshness SLO, StaleData).
    realtime_datasets: tuple[str, ...] = ("quotes", "trades", "orderbook")
    #: Health components and dependencies that deliver only while the market is open (an app
    #: may derive their health from freshness, as the reference app does): their health alerts
    #: follow the session gate, like the market-data rules.
    feed_components: tuple[str, ...] = ("market_data",)
    feed_dependencies: tuple[str, ...] = ("market_data_feed",)
    #: Label set on every alert gated on the session, so that ONE silence covers an exchange
    #: holiday or an unplanned closure, SLO burn alerts included (docs/runbooks.md).
    gate_label: tuple[str, str] = ("gate", "trading_session")

    def __post_init__(self) -> None:
        for start, end in self.utc_minutes:
            if not 0 <= start < end <= 24 * 60:
                raise ValueError(f"sessions.utc_minutes={self.utc_minutes!r}: expected START-END pairs of "
                                 "UTC minutes since midnight, 0 <= START < END <= 1440")
        if not self.days or any(d not in range(7) for d in self.days):
            raise ValueError(f"sessions.days={self.days!r}: expected day_of_week() values 0-6")
        for day in self.holidays:
            try:
                date.fromisoformat(day)
            except (TypeError, ValueError):
                raise ValueError(f"holiday {day!r}: expected a date YYYY-MM-DD") from None

    @property
    def first_open_last_close(self) -> tuple[int, int]:
        return self.utc_minutes[0][0], self.utc_minutes[-1][1]

    def text(self) -> str:
        """``01:30-03:30 and 05:00-07:00 UTC``."""
        return " and ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
                            for a, b in self.utc_minutes) + " UTC"


@dataclass(frozen=True)
class Labels:
    """The label vocabularies Alertmanager routes on: the one place they are listed.

    Every alert's labels are checked against them at render time, and the routing tree
    (``mystocks_otel_mixin.routing``) is generated from them.
    """

    severities: tuple[str, ...] = ("critical", "warning", "info")
    #: One rules module (``rules/<category>.py``) and one promtool file (alerts/tests/<category>.yml)
    #: per category, in this order.
    categories: tuple[str, ...] = (
        "api", "database", "cache", "websocket", "market_data", "system", "health", "business",
        "aggregated", "slo", "meta",
    )
    priorities: tuple[str, ...] = ("P0", "P1", "P2", "P3")
    teams: tuple[str, ...] = ("platform", "data", "performance")
    #: The `service` label of each category's alerts (Alertmanager groups and inhibits on it,
    #: and PagerDuty opens one incident per service): the thing that is broken, not the symptom.
    services: tuple[tuple[str, str], ...] = (
        ("api", "mystocks-api"), ("database", "postgresql"), ("cache", "redis"),
        ("websocket", "mystocks-api"), ("market_data", "market-data"), ("system", "mystocks-api"),
        ("health", "mystocks-api"), ("business", "mystocks-api"), ("aggregated", "mystocks-api"),
        ("slo", "mystocks-api"), ("meta", "monitoring"),
    )

    def __post_init__(self) -> None:
        missing = [c for c in self.categories if c not in dict(self.services)]
        if missing:
            raise ValueError(f"labels.services: no service for categories {', '.join(missing)}: "
                             "expected CATEGORY=SERVICE for every category")

    def service_of(self, category: str) -> str:
        return dict(self.services)[category]


@dataclass(frozen=True)
class Routing:
    """Who hears what (``mystocks_otel_mixin.routing`` writes alerts/alertmanager/alertmanager.yml.tmpl).

    Receivers are named from the vocabulary: ``slack-<channel>``, ``email-<team>`` and the
    fixed ``webhook``, ``heartbeat``, ``pagerduty-oncall`` and ``pagerduty-service``.
    """

    #: (severity, group_wait, group_interval, repeat_interval): one routing branch per severity.
    #: The page severity's group_wait (20 s: one 15 s evaluation interval, within which every rule
    #: group is evaluated once, plus 5 s of delivery) holds a symptom long enough for its cause,
    #: fired in the same evaluation by another group, to arrive and inhibit it.
    timers: tuple[tuple[str, str, str, str], ...] = (
        ("critical", "20s", "1m", "1h"),
        ("warning", "30s", "5m", "10m"),
        ("info", "30s", "5m", "4h"),
    )
    #: The Slack channel (``#mystocks-<channel>``) of each severity that notifies people.
    severity_channels: tuple[tuple[str, str], ...] = (("critical", "critical"), ("warning", "warnings"))
    #: A team's own Slack channel, besides its lead's e-mail (teams not listed: e-mail only).
    team_channels: tuple[tuple[str, str], ...] = (("performance", "performance"), ("data", "data-alerts"))
    #: The severity that pages PagerDuty on-call (every alert of it).
    page_severity: str = "critical"
    #: Categories whose warnings page the PagerDuty service key too (spec: "health alerts").
    service_page_categories: tuple[str, ...] = ("health",)
    #: Team leads get the event and its resolution, not the reminders.
    email_repeat_interval: str = "24h"
    #: The group_wait of the page severity's alerts that name a cause (``routing.CAUSES``:
    #: PostgreSQLDown, RedisDown ...): they page at once; their symptoms wait the severity's.
    cause_group_wait: str = "0s"
    #: Microsoft Teams channels (Workflows webhooks) beside Slack: (severity, channel) gives a
    #: receiver ``msteams-<channel>`` in that severity's branch. Empty: no Teams.
    msteams_channels: tuple[tuple[str, str], ...] = (("critical", "critical"), ("warning", "warnings"))

    def receivers(self, labels: Labels) -> tuple[str, ...]:
        """Every receiver name, in the order the config lists them."""
        slack = [c for _, c in self.severity_channels] + [c for _, c in self.team_channels]
        return ("webhook", "heartbeat", *(f"slack-{c}" for c in dict.fromkeys(slack)),
                *(f"msteams-{c}" for c in dict.fromkeys(c for _, c in self.msteams_channels)),
                "pagerduty-oncall", "pagerduty-service", *(f"email-{t}" for t in labels.teams))


@dataclass(frozen=True)
class MixinConfig:
    """What a deployment may override when rendering (``mystocks-otel render --show-config``).

    The defaults suit docker-compose.
    """

    grafana_url: str = "http://localhost:3000"
    runbook_url: str = "https://github.com/mystocks/mystocks-otel/blob/main/docs/runbooks.md"
    app_job: str = APP_JOB
    collector_job: str = COLLECTOR_JOB
    prometheus_job: str = PROMETHEUS_JOB
    alertmanager_job: str = ALERTMANAGER_JOB
    #: Grafana gets a Loki datasource only when one is named (dashboards/provisioning).
    loki_url: str | None = None
    slos: tuple[SLO, ...] = field(default=SLOS)
    #: (severity, long window, short window, factor): ``--set burn_rates=critical:1h:5m:14.4,...``.
    burn_rates: tuple[tuple[str, str, str, float], ...] = BURN_RATE_ALERTS
    slo_windows: tuple[str, ...] = SLO_WINDOWS
    #: The app's HTTP duration buckets (MYSTOCKS_OTEL_HTTP_BUCKETS; default the catalog's):
    #: `render` refuses a latency threshold read through histogram_quantile or `le` that is
    #: not one of them (mystocks_otel_mixin.render.check_http_buckets).
    http_buckets: tuple[float, ...] = LATENCY_BUCKETS
    thresholds: Thresholds = field(default_factory=Thresholds)
    sessions: Sessions = field(default_factory=Sessions)
    labels: Labels = field(default_factory=Labels)
    routing: Routing = field(default_factory=Routing)

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
        for slo in self.slos:
            if not 0.0 < slo.objective < 1.0:
                raise ValueError(f"SLO {slo.name} objective {slo.objective!r}: expected 0 < x < 1")
        for name in ("severities", "categories", "priorities", "teams"):
            for value in getattr(self.labels, name):
                if not value or any(ch in value for ch in '"\\{}|, \n'):
                    raise ValueError(f"labels.{name}: {value!r}: expected a label value without quotes, "
                                     "braces, bars, commas or spaces")
        if not self.http_buckets or any(b <= 0 for b in self.http_buckets) or \
                list(self.http_buckets) != sorted(set(self.http_buckets)):
            raise ValueError(f"http_buckets={','.join(map(str, self.http_buckets))}: expected increasing "
                             "bucket bounds in seconds, e.g. http_buckets=0.1,0.5,1,2.5")
        windows = {w for _, long, short, _ in self.burn_rates for w in (long, short)}
        if not windows <= set(self.slo_windows):
            raise ValueError(f"burn_rates: windows {', '.join(sorted(windows - set(self.slo_windows)))} are not "
                             f"recorded: expected windows from slo_windows ({', '.join(self.slo_windows)})")
        unknown = {s for s, *_ in self.routing.timers} - set(self.labels.severities)
        unknown |= {s for s, *_ in self.burn_rates} - set(self.labels.severities)
        unknown |= {s for s, _ in self.routing.severity_channels} - set(self.labels.severities)
        unknown |= {self.routing.page_severity} - set(self.labels.severities)
        if unknown:
            raise ValueError(f"routing: unknown severities {', '.join(sorted(unknown))}: expected one of "
                             f"labels.severities ({', '.join(self.labels.severities)})")
        unknown = {t for t, _ in self.routing.team_channels} - set(self.labels.teams)
        if unknown:
            raise ValueError(f"routing.team_channels: unknown teams {', '.join(sorted(unknown))}: expected "
                             f"one of labels.teams ({', '.join(self.labels.teams)})")

    @property
    def holidays(self) -> tuple[str, ...]:
        return self.sessions.holidays

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

    def with_holidays(self, holidays: tuple[str, ...]) -> "MixinConfig":
        return replace(self, sessions=replace(self.sessions, holidays=tuple(holidays)))

    # -- generic overrides: --set KEY=VALUE and --config FILE.yaml ----------------------------

    def with_overrides(self, values: Mapping[str, Any]) -> "MixinConfig":
        """A copy with dotted keys replaced: ``{"thresholds.cache_hit_ratio_warning": "0.7"}``.

        Values are strings (``--set``, parsed by the field's type) or already typed (YAML).
        ``slos.<name>`` sets that SLO's objective. Raises ValueError naming the key and the
        expected form.
        """
        cfg = self
        objectives = {}
        for key, value in values.items():
            if key.startswith("slos."):
                objectives[key[5:]] = _convert(key, value, float)
                continue
            cfg = _set(cfg, key.split("."), value, key)
        return cfg.with_slo_objectives(objectives) if objectives else cfg

    def items(self) -> list[tuple[str, Any]]:
        """Every overridable key and its value (``render --show-config``)."""
        out: list[tuple[str, Any]] = []
        _walk(self, "", out)
        out.extend((f"slos.{s.name}", s.objective) for s in self.slos)
        return out


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"thresholds": {"x": 1}}`` -> ``{"thresholds.x": 1}`` (a --config file's shape)."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _walk(obj, prefix: str, out: list) -> None:
    for f in dataclasses.fields(obj):
        if f.name == "slos":
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _walk(value, f"{prefix}{f.name}.", out)
        else:
            out.append((f"{prefix}{f.name}", value))


def _set(obj, path: list[str], value: Any, key: str):
    names = {f.name for f in dataclasses.fields(obj)} - {"slos"}
    head = path[0]
    if head not in names:
        close = difflib.get_close_matches(head, names, n=3)
        prefix = key[: len(key) - len(".".join(path))]
        hint = ", ".join(prefix + c for c in close) if close else ", ".join(prefix + n for n in sorted(names))
        raise ValueError(f"unknown key {key}: expected {'e.g. ' if close else 'one of '}{hint} "
                         "(`mystocks-otel render --show-config` lists every key)")
    current = getattr(obj, head)
    nested = dataclasses.is_dataclass(current) and not isinstance(current, type)
    if nested and len(path) > 1:
        return replace(obj, **{head: _set(current, path[1:], value, key)})
    if nested:
        first = dataclasses.fields(current)[0].name
        raise ValueError(f"{key} is a group: expected a key inside it, e.g. {key}.{first} "
                         "(`mystocks-otel render --show-config` lists every key)")
    if len(path) > 1:
        raise ValueError(f"unknown key {key}: {key[: len(key) - len('.'.join(path[1:])) - 1]} has no keys inside "
                         "(`mystocks-otel render --show-config` lists every key)")
    kind = typing.get_type_hints(type(obj))[head]
    try:
        return replace(obj, **{head: _convert(key, value, kind)})
    except TypeError as error:  # pragma: no cover - a dataclass refusing the field
        raise ValueError(f"{key}: {error}") from None


def _convert(key: str, value: Any, kind) -> Any:
    """``value`` (a --set string or a YAML value) as ``kind``; ValueError names the form."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value in (None, "", "none", "null"):
            return None
        return _convert(key, value, next(a for a in args if a is not type(None)))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(f"{key}={value!r}: expected true or false")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{key}={value!r}: expected a number, e.g. {key}=0.8")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}={value!r}: expected a number, e.g. {key}=0.8") from None
        if kind is int:
            if number != int(number):
                raise ValueError(f"{key}={value!r}: expected a whole number")
            return int(number)
        return number
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{key}={value!r}: expected a string")
        return str(value)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{key}={value!r}: expected a comma-separated list")
        items = [i.strip() if isinstance(i, str) else i for i in items]
        items = [i for i in items if i != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            element = args[0]
            if typing.get_origin(element) is tuple:  # pairs: "90-210,300-420" or "api=mystocks-api"
                return tuple(_pair(key, i, typing.get_args(element)) for i in items)
            return tuple(_convert(key, i, element) for i in items)
        return _pair(key, value, args)
    raise ValueError(f"{key}: cannot be set from the command line")  # pragma: no cover


def _pair(key: str, item: Any, kinds: tuple) -> tuple:
    if isinstance(item, str):
        sep = "-" if kinds and kinds[0] is int else next((s for s in "=:," if s in item), "=")
        parts = item.split(sep)
    else:
        parts = list(item)
    if len(parts) != len(kinds):
        example = "90-210,300-420" if kinds and kinds[0] is int else "api=mystocks-api,cache=redis"
        raise ValueError(f"{key}={item!r}: expected {len(kinds)} values per item, e.g. {key}={example}")
    return tuple(_convert(key, p, k) for p, k in zip(parts, kinds))


DEFAULT = MixinConfig()
