"""The metric catalog: every metric mystocks-otel emits, defined once.

Instruments, views, ``/metrics/list``, ``docs/METRICS.md``, the dashboards and
the alert rules all derive from (or are tested against) :data:`METRICS`.
Adding a metric means adding one :class:`MetricSpec` here; the consistency
tests then say what else must follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    COUNTER = "counter"
    UPDOWN = "updowncounter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


PRIORITIES = ("P0", "P1", "P2", "P3")

#: Value that replaces an attribute value outside a label's bounded set.
OTHER = "other"

#: Attribute that marks the one series collecting measurements past the cardinality limit.
OVERFLOW_ATTRIBUTE = "otel.metric.overflow"

# -- how several workers' values merge (MetricSpec.multiprocess) -----------------------------
SUM = "sum"  # add the workers' values
MAX = "max"  # the highest worker
MIN = "min"  # the lowest worker (health: any worker down shows 0)
LATEST = "latest"  # the value set last, by whichever worker (values copied from a shared source)
PER_WORKER = "worker"  # one series per live worker, with a bounded ``worker`` label (its slot)
MERGE_RULES = (SUM, MAX, MIN, LATEST, PER_WORKER)

# The Prometheus exporter's unit suffixes (OTel spec: Prometheus compatibility).
_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent", "1": ""}

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SESSION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
RESOLUTION_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
#: Bytes, powers of 4 from 64 B to 16 MiB: an empty GET, a JSON reply, a page, an upload.
BODY_SIZE_BUCKETS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
                     4194304.0, 16777216.0)


@dataclass(frozen=True)
class Label:
    """One allowed attribute. ``values`` bounds it; values outside become ``other``.

    ``values=None`` means the producer bounds it (a route template, a pool name).
    """

    key: str
    values: frozenset[str] | None = None

    @property
    def prometheus_name(self) -> str:
        return re.sub(r"[^a-zA-Z0-9]+", "_", self.key)


def label(key: str, *values: str) -> Label:
    return Label(key, frozenset(values) | {OTHER} if values else None)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    labels: tuple[Label, ...]
    priority: str
    domain: str
    frequency: str = "per event"
    semconv: bool = False
    buckets: tuple[float, ...] | None = None
    #: How /metrics merges this metric's series over the workers of a multiprocess server
    #: (see mystocks_otel._internal.multiprocess): counters and histograms add up every worker that
    #: ever ran (MAX for totals copied from elsewhere, e.g. Redis INFO); gauges and
    #: up-down counters take the live workers only, by one of MERGE_RULES.
    multiprocess: str | None = None

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        return tuple(lbl.key for lbl in self.labels)

    @property
    def prometheus_type(self) -> str:
        return {Kind.COUNTER: "counter", Kind.HISTOGRAM: "histogram"}.get(self.kind, "gauge")

    @property
    def prometheus_name(self) -> str:
        """The family name the OTel Prometheus exporter emits for this metric."""
        base = re.sub(r"[^a-zA-Z0-9:]+", "_", self.name)
        unit = re.sub(r"\{.*\}", "", self.unit)
        suffix = _UNIT_SUFFIXES.get(unit, unit)
        if suffix and not base.endswith("_" + suffix):
            base = f"{base}_{suffix}"
        if self.kind is Kind.COUNTER:
            base += "_total"
        return base

    @property
    def prometheus_series(self) -> tuple[str, ...]:
        """Sample names on /metrics (a histogram emits three)."""
        if self.kind is Kind.HISTOGRAM:
            return tuple(self.prometheus_name + s for s in ("_bucket", "_sum", "_count"))
        return (self.prometheus_name,)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "prometheus_name": self.prometheus_name,
            "type": self.kind.value,
            "prometheus_type": self.prometheus_type,
            "unit": self.unit,
            "description": self.description,
            "labels": {
                lbl.key: sorted(lbl.values) if lbl.values else None for lbl in self.labels
            },
            "priority": self.priority,
            "domain": self.domain,
            "frequency": self.frequency,
            "semconv": self.semconv,
            "multiprocess": self.multiprocess or SUM,
        }


# -- bounded label vocabularies ---------------------------------------------------------------
SOURCE = label("source", "akshare", "baostock", "tushare", "tdx", "efinance", "exchange", "simulator")
DATA_TYPE = label("data_type", "quote", "trade", "bar", "orderbook", "fundamental", "news")
PLATFORM = label("platform", "web", "ios", "android", "api", "desktop")
DATASET = label("dataset", "quotes", "trades", "bars", "orderbook", "fundamentals", "news", "portfolio")
CACHE = label("cache", "redis", "memory")
SCOPE = label("scope", "process", "system")
SEVERITY = label("severity", "critical", "warning", "info")
CATEGORY = label(
    "category", "api", "database", "cache", "websocket", "market_data", "system",
    "health", "business", "aggregated", "slo", "meta",
)
COMPONENT = label("component", "api", "database", "cache", "market_data", "websocket", "exporter")
DEPENDENCY = label("dependency", "postgresql", "sqlite", "redis", "market_data_feed", "otel_collector")
DB_OPERATION = label(
    "operation", "SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK",
    "CREATE", "ALTER", "DROP", "PRAGMA", "WITH", "SET", "SHOW", "TRUNCATE",
)
DB_TABLE = Label("table")  # bounded by MYSTOCKS_OTEL_DB_TABLES; anything else is "other"
DB_POOL = Label("pool")  # "<backend>/<database>" of each engine
NAMESPACE = Label("namespace")  # the WebSocket route template
HTTP_METHOD = label(
    "http.request.method", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
    "TRACE", "PATCH", "_OTHER",
)
REDIS_COMMAND = label(
    "command", "GET", "SET", "SETEX", "MGET", "MSET", "DEL", "EXISTS", "EXPIRE", "TTL",
    "INCR", "INCRBY", "DECR", "HGET", "HSET", "HGETALL", "HDEL", "LPUSH", "RPUSH", "LPOP",
    "RPOP", "LRANGE", "SADD", "SREM", "SMEMBERS", "ZADD", "ZRANGE", "ZREM", "PUBLISH",
    "PING", "INFO", "FLUSHDB", "SCAN", "KEYS", "PIPELINE",
)
METRIC_NAME = Label("metric")  # a catalog name: bounded by the catalog itself


def _m(name, kind, unit, description, labels, priority, domain, **kw) -> MetricSpec:
    return MetricSpec(name, kind, unit, description, tuple(labels), priority, domain, **kw)


C, U, G, H = Kind.COUNTER, Kind.UPDOWN, Kind.GAUGE, Kind.HISTOGRAM

METRICS: tuple[MetricSpec, ...] = (
    # -- HTTP server (OTel stable semantic conventions, emitted by our ASGI layer) ----------
    _m("http.server.request.duration", H, "s", "Duration of HTTP server requests.",
       [HTTP_METHOD, Label("http.route"), Label("http.response.status_code")], "P0", "http",
       semconv=True, buckets=LATENCY_BUCKETS, frequency="per request"),
    _m("http.server.request.body.size", H, "By",
       "Size of HTTP request bodies (Content-Length, else the bytes the app read); recorded "
       "only with MYSTOCKS_OTEL_HTTP_BODY_SIZE=true.",
       [HTTP_METHOD, Label("http.route"), Label("http.response.status_code")], "P2", "http",
       semconv=True, buckets=BODY_SIZE_BUCKETS, frequency="per request"),
    _m("http.server.response.body.size", H, "By",
       "Size of HTTP response bodies (Content-Length, else the bytes sent); recorded only "
       "with MYSTOCKS_OTEL_HTTP_BODY_SIZE=true.",
       [HTTP_METHOD, Label("http.route"), Label("http.response.status_code")], "P2", "http",
       semconv=True, buckets=BODY_SIZE_BUCKETS, frequency="per request"),
    _m("http.server.active_requests", U, "{request}", "HTTP server requests in flight.",
       [HTTP_METHOD], "P1", "http", semconv=True, frequency="per request", multiprocess=SUM),
    _m("db.client.connection.count", U, "{connection}",
       "Connections in each SQLAlchemy pool, by state (idle|used).",
       [Label("db.client.connection.pool.name"), label("db.client.connection.state", "idle", "used")],
       "P2", "db", semconv=True, frequency="per collection", multiprocess=PER_WORKER),
    # -- market data -----------------------------------------------------------------------
    _m("mystocks.market_data.points_processed", C, "{point}", "Market data points processed.",
       [SOURCE, DATA_TYPE], "P1", "market_data"),
    _m("mystocks.market_data.processing_duration", H, "s",
       "Time to process one market data batch or point.",
       [SOURCE, DATA_TYPE], "P1", "market_data", buckets=LATENCY_BUCKETS),
    _m("mystocks.market_data.symbols_tracked", G, "{symbol}", "Symbols with a live feed.",
       [SOURCE], "P3", "market_data", frequency="per update", multiprocess=MAX),
    _m("mystocks.market_data.last_update_timestamp", G, "s",
       "Unix time of the newest market data point processed, by source: alert on time() - it, "
       "which keeps growing when the producer dies, unlike a freshness value it would stop setting.",
       [SOURCE], "P1", "market_data", frequency="per update", multiprocess=MAX),
    _m("mystocks.market_data.feed_errors", C, "{error}", "Market data feed errors.",
       [SOURCE, label("reason", "timeout", "connection", "parse", "rate_limited", "stalled")],
       "P1", "market_data"),
    # -- users -----------------------------------------------------------------------------
    _m("mystocks.user.active_sessions", U, "{session}", "Signed-in user sessions.",
       [PLATFORM], "P2", "user", frequency="per login/logout", multiprocess=SUM),
    _m("mystocks.user.sessions_started", C, "{session}", "User sessions started.",
       [PLATFORM], "P3", "user"),
    _m("mystocks.user.logins", C, "{login}", "Login attempts by result.",
       [PLATFORM, label("result", "success", "failure")], "P2", "user"),
    _m("mystocks.user.portfolio_updates", C, "{update}", "Portfolio changes.",
       [label("operation", "add", "remove", "update", "rebalance")], "P2", "user"),
    _m("mystocks.user.watchlist_operations", C, "{operation}", "Watchlist operations.",
       [label("operation", "add", "remove", "view")], "P3", "user"),
    # -- trading ---------------------------------------------------------------------------
    _m("mystocks.trading.orders", C, "{order}", "Orders by side, type and final status.",
       [label("side", "buy", "sell"), label("type", "market", "limit", "stop", "stop_limit"),
        label("status", "accepted", "filled", "rejected", "cancelled")], "P0", "trading"),
    _m("mystocks.trading.order_latency", H, "s", "Time from order submission to acknowledgement.",
       [label("side", "buy", "sell"), label("type", "market", "limit", "stop", "stop_limit")],
       "P0", "trading", buckets=LATENCY_BUCKETS),
    _m("mystocks.trading.open_orders", U, "{order}", "Orders accepted and not yet final.",
       [label("side", "buy", "sell")], "P2", "trading", multiprocess=LATEST),
    # -- data quality ----------------------------------------------------------------------
    _m("mystocks.data_quality.completeness_ratio", G, "1",
       "Share of expected records present (0-1).", [DATASET], "P1", "data_quality",
       frequency="per batch", multiprocess=MIN),
    _m("mystocks.data_quality.freshness", G, "s", "Age of the newest record.",
       [DATASET], "P0", "data_quality", frequency="per batch", multiprocess=MAX),
    _m("mystocks.data_quality.anomalies", C, "{anomaly}", "Data anomalies detected.",
       [DATASET, label("kind", "spike", "gap", "stale", "outlier", "duplicate")], "P2",
       "data_quality"),
    # -- WebSocket (our ASGI layer: upstream records nothing for WebSocket scopes) -----------
    _m("mystocks.websocket.active_connections", U, "{connection}", "Open WebSocket connections.",
       [NAMESPACE], "P1", "websocket", frequency="per connection", multiprocess=SUM),
    _m("mystocks.websocket.connections_opened", C, "{connection}", "WebSocket connections accepted.",
       [NAMESPACE], "P3", "websocket", frequency="per connection"),
    _m("mystocks.websocket.messages", C, "{message}", "WebSocket messages.",
       [NAMESPACE, label("direction", "sent", "received"), label("message_type", "text", "binary")],
       "P2", "websocket", frequency="per message"),
    _m("mystocks.websocket.connection_errors", C, "{error}",
       "WebSocket connections that ended in error or were rejected.",
       [NAMESPACE, label("reason", "exception", "abnormal_close", "rejected")], "P1", "websocket"),
    _m("mystocks.websocket.connection_duration", H, "s", "Lifetime of WebSocket connections.",
       [NAMESPACE], "P3", "websocket", buckets=SESSION_BUCKETS, frequency="per connection"),
    # -- cache -----------------------------------------------------------------------------
    _m("mystocks.cache.hits", C, "{hit}", "Cache lookups that found the key.", [CACHE], "P2", "cache"),
    _m("mystocks.cache.misses", C, "{miss}", "Cache lookups that missed.", [CACHE], "P2", "cache"),
    _m("mystocks.cache.hit_ratio", G, "1", "Hits / (hits + misses) since start (0-1).",
       [CACHE], "P1", "cache", frequency="per update", multiprocess=MIN),
    _m("mystocks.cache.memory_usage", G, "By", "Memory used by the cache.", [CACHE], "P2",
       "cache", frequency="per update", multiprocess=LATEST),
    _m("mystocks.cache.evictions", C, "{eviction}", "Keys evicted for memory.", [CACHE], "P2",
       "cache", frequency="per update", multiprocess=MAX),
    _m("mystocks.cache.keys", G, "{key}", "Keys held by the cache.", [CACHE], "P3", "cache",
       frequency="per update", multiprocess=LATEST),
    _m("mystocks.redis.command_duration", H, "s", "Duration of Redis commands.",
       [REDIS_COMMAND], "P2", "redis", buckets=REDIS_BUCKETS, frequency="per command"),
    _m("mystocks.redis.command_errors", C, "{error}", "Redis commands that raised.",
       [REDIS_COMMAND, label("error_type", "ConnectionError", "TimeoutError", "ResponseError",
                              "AuthenticationError", "BusyLoadingError", "ReadOnlyError")],
       "P1", "redis", frequency="per command"),
    # -- database --------------------------------------------------------------------------
    _m("mystocks.db.connections_active", G, "{connection}", "Pool connections checked out.",
       [DB_POOL], "P1", "db", frequency="per update", multiprocess=PER_WORKER),
    _m("mystocks.db.connections_idle", G, "{connection}", "Pool connections idle in the pool.",
       [DB_POOL], "P2", "db", frequency="per update", multiprocess=PER_WORKER),
    _m("mystocks.db.connections_open", G, "{connection}", "Pool connections open: the total of active and idle.",
       [DB_POOL], "P2", "db", frequency="per update", multiprocess=PER_WORKER),
    _m("mystocks.db.connections_max", G, "{connection}",
       "Most connections the pool may open (size + max overflow).", [DB_POOL], "P2", "db",
       frequency="per update", multiprocess=PER_WORKER),
    _m("mystocks.db.query_duration", H, "s", "Duration of SQL statements.",
       [DB_OPERATION, DB_TABLE], "P1", "db", buckets=DB_BUCKETS, frequency="per query"),
    _m("mystocks.db.slow_queries", C, "{query}",
       "Statements slower than MYSTOCKS_OTEL_SLOW_QUERY_SECONDS.", [DB_OPERATION, DB_TABLE],
       "P1", "db", frequency="per query"),
    _m("mystocks.db.query_errors", C, "{error}", "SQL statements that raised.",
       [DB_OPERATION, label("error_type", "OperationalError", "IntegrityError", "ProgrammingError",
                            "DataError", "InterfaceError", "InternalError", "NotSupportedError",
                            "DatabaseError", "TimeoutError")], "P1", "db", frequency="per query"),
    # -- system (psutil) -------------------------------------------------------------------
    _m("mystocks.system.cpu_utilization", G, "%", "CPU use of this process and the host.",
       [SCOPE], "P1", "system", frequency="per probe interval", multiprocess=MAX),
    _m("mystocks.system.memory_usage", G, "By", "Resident memory of the process; used memory of the host.",
       [SCOPE], "P1", "system", frequency="per probe interval", multiprocess=MAX),
    _m("mystocks.system.memory_utilization", G, "%", "Memory use as a share of the host's.",
       [SCOPE], "P1", "system", frequency="per probe interval", multiprocess=MAX),
    _m("mystocks.system.disk_utilization", G, "%", "Used share of the data disk.",
       [Label("mountpoint")], "P1", "system", frequency="per probe interval", multiprocess=MAX),
    _m("mystocks.system.disk_free", G, "By", "Free bytes on the data disk.",
       [Label("mountpoint")], "P2", "system", frequency="per probe interval", multiprocess=MIN),
    _m("mystocks.system.uptime", G, "s", "Uptime of the process and the host.",
       [SCOPE], "P3", "system", frequency="per probe interval", multiprocess=MIN),
    _m("mystocks.system.threads", G, "{thread}", "Threads of this process.", [], "P3", "system",
       frequency="per probe interval", multiprocess=MAX),
    _m("mystocks.system.worker_crashes", C, "{crash}",
       "Workers of this server that died without shutting down (OOM kill, SIGKILL, a crash): "
       "counted on /metrics in multiprocess mode; 0 in single-process mode.", [], "P2", "system",
       frequency="per worker death"),
    # -- alert lifecycle (fed by the Alertmanager webhook) -----------------------------------
    _m("mystocks.alert.fired", C, "{alert}", "Alerts that started firing.",
       [SEVERITY, CATEGORY], "P2", "alert", frequency="per notification"),
    _m("mystocks.alert.resolved", C, "{alert}", "Alerts that resolved.",
       [SEVERITY, CATEGORY], "P2", "alert", frequency="per notification"),
    _m("mystocks.alert.active", U, "{alert}", "Alerts firing now.", [SEVERITY], "P1", "alert",
       frequency="per notification", multiprocess=LATEST),
    _m("mystocks.alert.resolution_duration", H, "s", "Time from firing to resolution.",
       [SEVERITY], "P2", "alert", buckets=RESOLUTION_BUCKETS, frequency="per notification"),
    # -- health ----------------------------------------------------------------------------
    _m("mystocks.health.component_status", G, "1", "1 when the component is healthy, else 0.",
       [COMPONENT], "P0", "health", frequency="per probe interval", multiprocess=MIN),
    _m("mystocks.health.dependency_availability", G, "1",
       "1 when the dependency answers its probe, else 0.", [DEPENDENCY], "P0", "health",
       frequency="per probe interval", multiprocess=MIN),
    _m("mystocks.health.check_duration", H, "s", "Duration of health probes.", [COMPONENT],
       "P3", "health", buckets=DB_BUCKETS, frequency="per probe interval"),
    # -- the telemetry's own health ----------------------------------------------------------
    _m("mystocks.telemetry.dropped_measurements", C, "{measurement}",
       "Measurements dropped (NaN, infinite, negative counter increment, recorder error).",
       [METRIC_NAME, label("reason", "nan", "infinite", "negative", "error")], "P2", "telemetry"),
    _m("mystocks.telemetry.sanitized_attributes", C, "{attribute}",
       "Attributes stripped or replaced (unknown key, value outside its set, overflow).",
       [METRIC_NAME, label("reason", "unknown_key", "value_not_allowed", "overflow")], "P2",
       "telemetry"),
    _m("mystocks.telemetry.export_failures", C, "{failure}",
       "Metric exports that failed (push exporters; /metrics/health shows the last error).",
       [label("exporter", "otlp")], "P2", "telemetry"),
    _m("mystocks.telemetry.dropped_spans", C, "{span}",
       "Spans lost: tail-sampling buffers full (buffer_full, trace_too_long, trace_given_up), "
       "the batch queue full (queue_full) or closed (already_shutdown), the export failed "
       "(export_failed).",
       [label("reason", "buffer_full", "trace_too_long", "trace_given_up", "queue_full",
              "already_shutdown", "export_failed")], "P2", "telemetry"),
    _m("mystocks.telemetry.dropped_log_records", C, "{record}",
       "Log records lost: the batch queue full (queue_full) or closed (already_shutdown), the "
       "export failed (export_failed).",
       [label("reason", "queue_full", "already_shutdown", "export_failed")], "P2", "telemetry"),
)

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}
BY_PROMETHEUS_NAME: dict[str, MetricSpec] = {spec.prometheus_name: spec for spec in METRICS}


def custom_metrics() -> tuple[MetricSpec, ...]:
    return tuple(spec for spec in METRICS if not spec.semconv)


def get(name: str) -> MetricSpec:
    return BY_NAME[name]
