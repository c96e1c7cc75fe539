"""The "MyStocks Monitoring Dashboard": the specification's 18 panels plus the P0/P1 metrics
they leave out, in 7 rows. Built by ``dashboards.generate(cfg)`` (needs the SDK)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from mystocks_otel_mixin import config
from mystocks_otel_mixin.dashboards.common import (
    barchart_panel,
    base_dashboard,
    datasource_variable,
    gauge_panel,
    instance_variable,
    job_variable,
    number_panels,
    query,
    stat_panel,
    timeseries_panel,
    value_text,
)
from mystocks_otel_mixin.lib.promql import PromQL, histogram, labels_of, metric, num

HTTP = "http.server.request.duration"
#: Every selector carries the dashboard-linter's job and instance variables, and every rate()
#: Grafana's $__rate_interval.
Q = PromQL.grafana("job", "instance")


def _steps(warning: float, critical: float, *, rising: bool = True) -> tuple:
    """Threshold colours at the alerts' own warning and critical values (mixin.config)."""
    if rising:
        return ((None, "green"), (warning, "yellow"), (critical, "red"))
    return ((None, "red"), (critical, "yellow"), (warning, "green"))


#: A gauge's scale ends this far above the critical threshold, so a critical value is on the dial.
GAUGE_HEADROOM = 1.2


def _api(cfg: config.MixinConfig) -> list:
    t = cfg.thresholds
    by_request = labels_of(HTTP)  # method, route, status
    total = Q.sum_rate(metric(HTTP, "_count"))
    return [
        timeseries_panel(
            "HTTP Request Rate",
            "Requests per second by method, route template and status code "
            "(http.server.request.duration count).",
            "reqps",
            [query(Q.sum_rate(metric(HTTP, "_count"), by_request),
                   "{{http_request_method}} {{http_route}} {{http_response_status_code}}")],
            width=12),
        gauge_panel(
            "HTTP Duration p95/p99",
            "95th and 99th percentile of API request duration over all routes. Amber and red are "
            f"the response-time alerts' thresholds: p95 above {num(t.api_latency_p95_warning_seconds)} s "
            f"(warning) and {num(t.api_latency_p95_critical_seconds)} s (critical).",
            "s",
            [query(Q.quantile(0.95, histogram(HTTP)), "p95", instant=True),
             query(Q.quantile(0.99, histogram(HTTP)), "p99", instant=True)],
            width=6, max_val=t.api_latency_p95_critical_seconds * GAUGE_HEADROOM,
            steps=_steps(t.api_latency_p95_warning_seconds, t.api_latency_p95_critical_seconds)),
        timeseries_panel(
            "HTTP Error Rate",
            "Share of requests answered with 4xx (client errors) and 5xx (server errors). Amber and "
            f"red are the 5xx alerts' thresholds ({num(t.api_error_ratio_warning * 100)}% and "
            f"{num(t.api_error_ratio_critical * 100)}%).",
            "percentunit",
            [query(f"{Q.sum_rate(metric(HTTP, '_count'), extra=status_class)} / {total}", f"{cls}xx")
             for cls, status_class in (("4", 'http_response_status_code=~"4.."'),
                                       ("5", 'http_response_status_code=~"5.."'))],
            width=6, min_val=0,
            steps=_steps(t.api_error_ratio_warning, t.api_error_ratio_critical)),
        timeseries_panel(
            "HTTP Latency p95/p99",
            "95th and 99th percentile of API request duration over time. The dots are exemplars: "
            "a request that fell in that bucket, linked to its trace (tracing on, OpenMetrics scrape).",
            "s",
            [query(Q.quantile(0.95, histogram(HTTP)), "p95", exemplar=True),
             query(Q.quantile(0.99, histogram(HTTP)), "p99", exemplar=True)],
            width=12, min_val=0,
            steps=_steps(t.api_latency_p95_warning_seconds, t.api_latency_p95_critical_seconds)),
        timeseries_panel(
            "HTTP Requests In Flight",
            "Requests being served right now, by method (a queue builds up here before latency rises).",
            "short",
            [query(f"sum by (http_request_method) ({Q.sel(metric('http.server.active_requests'))})",
                   "{{http_request_method}}")],
            width=12),
    ]


def _database(cfg: config.MixinConfig) -> list:
    t = cfg.thresholds
    table = ("operation", "table")
    pool = "sum by (pool) "
    # A pool belongs to one process: under several workers each has its own (a `worker` label).
    by_process = "sum by (instance, worker, pool) "
    return [
        timeseries_panel(
            "DB Connections",
            "Pool connections checked out (active) and idle, against the pool's maximum "
            "(size + overflow): active near max means the pool is about to be exhausted.",
            "short",
            [query(f"{pool}({Q.sel(metric('mystocks.db.connections_active'))})", "active {{pool}}"),
             query(f"{pool}({Q.sel(metric('mystocks.db.connections_idle'))})", "idle {{pool}}"),
             query(f"{pool}({Q.sel(metric('mystocks.db.connections_max'))})", "max {{pool}}")],
            width=8, min_val=0),
        timeseries_panel(
            "DB Pool Usage by Process",
            "Checked-out share of each process's pool maximum (instance, and worker under several "
            "workers): a pool belongs to one process, so one exhausted pool shows here even beside "
            "idle ones. "
            f"Amber and red are the alerts' thresholds ({num(t.db_pool_usage_warning * 100)}% "
            f"and {num(t.db_pool_usage_exhausted * 100)}%).",
            "percentunit",
            [query(f"{by_process}({Q.sel(metric('mystocks.db.connections_active'))})\n/\n"
                   f"({by_process}({Q.sel(metric('mystocks.db.connections_max'))}) > 0)",
                   "{{instance}} {{worker}} {{pool}}")],
            width=8, min_val=0,
            steps=_steps(t.db_pool_usage_warning, t.db_pool_usage_exhausted)),
        timeseries_panel(
            "Slow Queries",
            "Statements slower than MYSTOCKS_OTEL_SLOW_QUERY_SECONDS per second, by operation and table.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.db.slow_queries"), table), "{{operation}} {{table}}")],
            width=8, min_val=0),
        timeseries_panel(
            "DB Query Latency p95",
            "95th percentile duration of SQL statements, by operation. The dots are exemplars, "
            "each linked to the trace of a statement that took that long.",
            "s",
            [query(Q.quantile(0.95, histogram("mystocks.db.query_duration"), ("operation",)), "{{operation}}",
                   exemplar=True)],
            width=12, min_val=0),
        timeseries_panel(
            "DB Query Errors",
            "SQL statements that raised, per second, by operation and exception type.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.db.query_errors"), ("operation", "error_type")),
                   "{{operation}} {{error_type}}")],
            width=12, min_val=0),
    ]


def _cache(cfg: config.MixinConfig) -> list:
    t = cfg.thresholds
    hits = Q.sum_rate(metric("mystocks.cache.hits"), ("cache",))
    misses = Q.sum_rate(metric("mystocks.cache.misses"), ("cache",))
    return [
        gauge_panel(
            "Cache Hit Rate",
            "Hits / (hits + misses) over the rate window, by cache (redis, memory). Computed from the "
            "counters rather than the since-start ratio gauge so that it reacts to a recent drop and "
            "adds up correctly across worker processes.",
            "percentunit",
            [query(f"{hits} / ({hits} + {misses})", "{{cache}}", instant=True)],
            max_val=1, steps=_steps(t.cache_hit_ratio_warning, t.cache_hit_ratio_critical,
                                    rising=False)),
        barchart_panel(
            "Cache Hits vs Misses",
            "Cache lookups per minute that hit and that missed, by cache.",
            "opm",
            [query(f"{hits} * 60", "hits {{cache}}", instant=True),
             query(f"{misses} * 60", "misses {{cache}}", instant=True)]),
        timeseries_panel(
            "Redis Command Errors",
            "Redis commands that raised, per second, by command and error type.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.redis.command_errors"), ("command", "error_type")),
                   "{{command}} {{error_type}}")],
            min_val=0),
        timeseries_panel(
            "Redis Command Latency p95",
            "95th percentile duration of Redis commands, by command. The dots are exemplars, each "
            "linked to the trace of a command that took that long.",
            "s",
            [query(Q.quantile(0.95, histogram("mystocks.redis.command_duration"), ("command",)), "{{command}}",
                   exemplar=True)],
            width=12, height=6, min_val=0),
        timeseries_panel(
            "Cache Hit Ratio: Recent vs Since Start",
            "The hit ratio over the rate window against the ratio since each process started "
            "(the application's own gauge): the long-run line is the baseline a recent drop "
            "is judged against.",
            "percentunit",
            [query(f"{hits} / ({hits} + {misses})", "recent {{cache}}"),
             query(f"avg by (cache) ({Q.sel(metric('mystocks.cache.hit_ratio'))})", "since start {{cache}}")],
            width=12, height=6, min_val=0, max_val=1,
            steps=_steps(t.cache_hit_ratio_warning, t.cache_hit_ratio_critical, rising=False)),
    ]


PROCESS = 'scope="process"'


def _system(cfg: config.MixinConfig) -> list:
    t = cfg.thresholds
    return [
        timeseries_panel(
            "Process Memory",
            "Resident memory of the API process, and memory used by each cache.",
            "bytes",
            [query(f"sum by (job, instance) ({Q.sel(metric('mystocks.system.memory_usage'), PROCESS)})",
                   "process {{instance}}"),
             query(f"sum by (cache) ({Q.sel(metric('mystocks.cache.memory_usage'))})", "cache {{cache}}")],
            min_val=0),
        gauge_panel(
            "CPU Usage",
            "CPU use in percent: the API process and the host it runs on. Amber and red are the "
            f"CPU alerts' thresholds ({num(t.cpu_percent_warning)}% and "
            f"{num(t.cpu_percent_critical)}%).",
            "percent",
            [query(f"max by (scope) ({Q.sel(metric('mystocks.system.cpu_utilization'))})", "{{scope}}",
                   instant=True)],
            max_val=100, steps=_steps(t.cpu_percent_warning, t.cpu_percent_critical)),
        timeseries_panel(
            "System Uptime",
            "Uptime of each service process (the youngest live worker's) and of its host, in days.",
            "d",
            [query(f"max by (job, scope) ({Q.sel(metric('mystocks.system.uptime'))}) / 86400",
                   "{{job}} {{scope}}")],
            min_val=0),
        timeseries_panel(
            "Memory & Disk Utilization",
            "Host memory in use and the data disk's used share, in percent.",
            "percent",
            [query(f"max by (scope) ({Q.sel(metric('mystocks.system.memory_utilization'))})", "memory {{scope}}"),
             query(f"max by (mountpoint) ({Q.sel(metric('mystocks.system.disk_utilization'))})",
                   "disk {{mountpoint}}")],
            width=12, height=6, min_val=0, max_val=100),
        timeseries_panel(
            "Worker Crashes",
            "Workers killed under a living server (OOM kill, SIGKILL, a hung worker its server "
            "killed), per instance: ApiFrequentRestarts adds them to the server's own restarts. "
            "A worker recycled by --max-requests or stopped on purpose is not a crash.",
            "short",
            [query(f"sum by (job, instance) (increase({Q.sel(metric('mystocks.system.worker_crashes'))}"
                   "[$__rate_interval]))", "{{instance}}")],
            width=12, height=6, min_val=0),
    ]


def _websocket(cfg: config.MixinConfig) -> list:
    return [
        timeseries_panel(
            "WebSocket Connections",
            "Open WebSocket connections by namespace (the WebSocket route).",
            "short",
            [query(f"sum by (namespace) ({Q.sel(metric('mystocks.websocket.active_connections'))})",
                   "{{namespace}}")],
            min_val=0),
        barchart_panel(
            "WebSocket Messages",
            "WebSocket messages per second, sent and received, by message type (text, binary).",
            "mps",
            [query(Q.sum_rate(metric("mystocks.websocket.messages"), ("direction", "message_type")),
                   "{{direction}} {{message_type}}", instant=True)]),
        timeseries_panel(
            "WebSocket Connection Errors",
            "WebSocket connections per second that ended in an error or were rejected, by reason.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.websocket.connection_errors"), ("namespace", "reason")),
                   "{{namespace}} {{reason}}")],
            min_val=0),
    ]


def _market_data(cfg: config.MixinConfig) -> list:
    t = cfg.thresholds
    latency = "mystocks.market_data.processing_duration"
    fresh = cfg.slo("market-data-freshness").threshold_seconds
    return [
        barchart_panel(
            "Market Data Points",
            "Market data points processed per second, by data source.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.market_data.points_processed"), ("source",)), "{{source}}",
                   instant=True)]),
        timeseries_panel(
            "Market Data Latency",
            "95th and 99th percentile processing time of market data, by source. Amber is the "
            f"market-data latency alert's p95 threshold ({num(t.market_data_p95_warning_seconds)} s).",
            "s",
            [query(Q.quantile(0.95, histogram(latency), ("source",)), "p95 {{source}}"),
             query(Q.quantile(0.99, histogram(latency), ("source",)), "p99 {{source}}")],
            min_val=0, steps=((None, "green"), (t.market_data_p95_warning_seconds, "yellow"))),
        timeseries_panel(
            "Market Data Feed Errors",
            "Feed errors per second, by source and reason (timeout, connection, parse, rate_limited, stalled).",
            "ops",
            [query(Q.sum_rate(metric("mystocks.market_data.feed_errors"), ("source", "reason")),
                   "{{source}} {{reason}}")],
            min_val=0),
        timeseries_panel(
            "Data Freshness",
            f"Age of the newest record of each dataset. Amber: the freshness SLO's bound "
            f"({num(fresh)} s); red: the stale-data alert's ({num(t.stale_data_seconds)} s).",
            "s",
            [query(f"max by (dataset) ({Q.sel(metric('mystocks.data_quality.freshness'))})", "{{dataset}}")],
            min_val=0, steps=_steps(fresh, t.stale_data_seconds)),
        timeseries_panel(
            "Market Data Age",
            "Seconds since each source last delivered a data point. Unlike Data Freshness it keeps "
            "growing when the producer dies (a frozen freshness gauge would not). Red is the "
            f"producer-stalled alert's threshold ({num(t.stale_data_seconds)} s, market open).",
            "s",
            [query(f"time() - max by (source) ({Q.sel(metric('mystocks.market_data.last_update_timestamp'))})",
                   "{{source}}")],
            min_val=0, steps=_steps(fresh, t.stale_data_seconds)),
        timeseries_panel(
            "Data Completeness",
            "Share of expected records present, by dataset.",
            "percentunit",
            [query(f"min by (dataset) ({Q.sel(metric('mystocks.data_quality.completeness_ratio'))})",
                   "{{dataset}}")],
            min_val=0, max_val=1),
        timeseries_panel(
            "Orders",
            "Orders per second by side and final status (accepted, filled, rejected, cancelled).",
            "ops",
            [query(Q.sum_rate(metric("mystocks.trading.orders"), ("side", "status")), "{{side}} {{status}}")],
            min_val=0),
        timeseries_panel(
            "Order Latency p95/p99",
            "Time from order submission to acknowledgement: 95th and 99th percentile.",
            "s",
            [query(Q.quantile(0.95, histogram("mystocks.trading.order_latency")), "p95"),
             query(Q.quantile(0.99, histogram("mystocks.trading.order_latency")), "p99")],
            width=16, min_val=0),
    ]


#: The alert that always fires (the dead man's switch): not an incident, so not counted.
WATCHDOG = "Watchdog"
#: Prometheus' own series of its alert rules' states (one per firing or pending alert).
FIRING_ALERTS = PromQL().sel("ALERTS", f'alertstate="firing", alertname!="{WATCHDOG}"')


def _users_alerts_health(cfg: config.MixinConfig) -> list:
    up_down = value_text({"0": ("Down", "red"), "1": ("Up", "green")})
    return [
        stat_panel(
            "Active Alerts",
            "Alert rules firing now in this Prometheus, by severity (its ALERTS series), the "
            f"{WATCHDOG} heartbeat left out. Every job counts: an alert about Prometheus or the "
            "Collector is as real as one about the API. Silenced and inhibited alerts count too "
            "(Alertmanager decides what is notified).",
            "short",
            [query(f"sum by (severity) ({FIRING_ALERTS})", "{{severity}}", instant=True)],
            width=6, steps=((None, "green"), (1, "red")), no_value="0"),
        stat_panel(
            "Alerts Seen by the Webhook",
            "Alerts firing according to the notifications the application's Alertmanager webhook "
            "received, by severity. Fewer than Active Alerts for long means notifications do not "
            "reach the webhook (check Alertmanager's notification errors).",
            "short",
            [query(f"sum by (severity) ({Q.sel(metric('mystocks.alert.active'))})", "{{severity}}", instant=True)],
            width=6, steps=((None, "green"), (1, "red")), no_value="0"),
        timeseries_panel(
            "User Sessions",
            "Signed-in user sessions, by platform.",
            "short",
            [query(f"sum by (platform) ({Q.sel(metric('mystocks.user.active_sessions'))})", "{{platform}}")],
            width=12, min_val=0),
        timeseries_panel(
            "Component Health",
            "1 when a component's health probe passes, 0 when it fails (the worst instance wins).",
            "none",
            [query(f"min by (component) ({Q.sel(metric('mystocks.health.component_status'))})", "{{component}}")],
            width=8, min_val=0, max_val=1, mappings=up_down),
        timeseries_panel(
            "Dependencies Availability",
            "Share of probes each external dependency answered over the rate window.",
            "percentunit",
            [query("avg by (dependency) (avg_over_time("
                   f"{Q.sel(metric('mystocks.health.dependency_availability'))}[{Q.window}]))",
                   "{{dependency}}")],
            width=8, min_val=0, max_val=1),
        timeseries_panel(
            "Telemetry Export Failures",
            "Metric exports per second that failed, by exporter (OTLP push): the Collector is "
            "down or refusing. Requests are never blocked by it; /metrics/health shows the last error.",
            "ops",
            [query(Q.sum_rate(metric("mystocks.telemetry.export_failures"), ("exporter",)), "{{exporter}}")],
            width=8, min_val=0),
    ]


ROWS = (
    ("API", _api),
    ("Database", _database),
    ("Cache", _cache),
    ("System", _system),
    ("WebSocket", _websocket),
    ("Market Data & Trading", _market_data),
    ("Users, Alerts & Health", _users_alerts_health),
)


def build(cfg: config.MixinConfig):
    board = base_dashboard(
        "MyStocks Monitoring Dashboard", config.MAIN_DASHBOARD_UID,
        "API, database, cache, system, WebSocket, market data, business and health metrics of MyStocks.",
        ["overview"], generator=__name__)
    for variable in (datasource_variable(), job_variable(cfg.app_job), instance_variable()):
        board = board.with_variable(variable)
    board = board.link(dashboard.DashboardLink("SLOs").type(DashboardLinkType.DASHBOARDS).tags(["slo"])
                       .include_vars(True).keep_time(True))
    for title, panels in ROWS:
        # Expanded rows: Grafana only shows panels that follow an expanded row, not ones inside it.
        board = board.with_row(dashboard.Row(title).collapsed(False))
        for panel in panels(cfg):
            board = board.with_panel(panel)
    return number_panels(board.build())
