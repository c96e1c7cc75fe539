"""Alerts on market data, the hosts, health, the business, the alerts themselves and monitoring."""

from __future__ import annotations

from mystocks_otel.mixin import config as c
from mystocks_otel.mixin.rulekit import JOB, Alert, num

OPEN = "and on () mystocks:trading_session:open"
REALTIME = "|".join(c.REALTIME_DATASETS)
_AVAIL = "mystocks_health_dependency_availability"

MARKET_DATA = (
    Alert(
        "MarketDataSlowProcessing",
        f"job_source:mystocks_market_data_processing_duration_seconds:p95_5m{{{JOB}}}"
        f" > {num(c.MARKET_DATA_P95_WARNING_SECONDS)}",
        "10m", "warning", "market_data", "P1", "data",
        "Market data from {{ $labels.source }} is processed slowly.",
        "p95 processing time of {{ $labels.source }} data is {{ $value | humanizeDuration }} "
        "(threshold 1s).",
        "processing p95 > 1 s for 10m",
        "A-share snapshots arrive every 3 s; a batch that takes over 1 s uses a third of the "
        "interval, and the bursts at the open then queue up and quotes go stale. 10 minutes "
        "ignores one slow provider response.",
        ("Which data types are slow: `mystocks_market_data_processing_duration_seconds_bucket` by data_type.",
         "Database write latency (DatabaseQueryTimeoutRisk) and the cache (writes go through it).",
         "Batch size from the provider (`rate(mystocks_market_data_points_processed_total[5m])`)."),
    ),
    Alert(
        "MarketDataProcessingBlocked",
        f"(sum by (job, source) (mystocks_market_data_symbols_tracked{{{JOB}}}) > 0)\n"
        f"unless on (job, source) (job_source:mystocks_market_data_points_processed:rate5m > 0)\n{OPEN}",
        "5m", "critical", "market_data", "P0", "data",
        "No market data processed from {{ $labels.source }}.",
        "{{ $value | humanize }} symbols from {{ $labels.source }} have a live feed but no point "
        "was processed in 5 minutes while the market is open.",
        "0 points/s from a source with tracked symbols, market open, for 5m",
        "Quotes tick every few seconds during the session, so 5+5 minutes without a single point "
        "from a source that still tracks symbols is a stuck consumer, not a quiet market. Gated "
        "on the trading session: at night no points is normal.",
        ("Feed errors for the source (MarketDataFeedErrors) and DependencyUnavailable{dependency=\"market_data_feed\"}.",
         "The ingestion worker: alive, and not blocked on a lock or a full queue (thread dump / py-spy).",
         "Whether today is an exchange holiday: then silence the market-data alerts for the day."),
    ),
    Alert(
        "MarketDataFeedErrors",
        f"job_source:mystocks_market_data_feed_errors:rate5m{{{JOB}}} * 60 > 5",
        "10m", "warning", "market_data", "P2", "data",
        "Market data source {{ $labels.source }} keeps failing.",
        "{{ $labels.source }} produced {{ $value | humanize }} feed errors per minute over the "
        "last 5 minutes (threshold 5/min).",
        "> 5 feed errors/min for 10m",
        "Free providers (akshare, efinance) time out or rate-limit a few times a minute and the "
        "client retries; more than 5 a minute for 10 minutes means the source is degraded and "
        "the fallback source should take over.",
        ("Which reason: `sum by (reason) (rate(mystocks_market_data_feed_errors_total[5m]))`.",
         "`rate_limited`: lower the polling rate or switch the source; `parse`: the provider changed its format.",
         "The provider's status page and our egress (DNS, proxy)."),
    ),
)

_CPU, _MEM = (f"job_instance:mystocks_system_{m}_utilization_percent:host{{{JOB}}}" for m in ("cpu", "memory"))
_DISK = f"job_instance_mountpoint:mystocks_system_disk_utilization_percent:max{{{JOB}}}"
_CPU_CHECKS = (
    "`top`/`py-spy top` on the instance: the API process, or something else on the host?",
    "Request rate and WebSocket connections: a traffic rise needs more replicas.",
    "A hot loop after a deploy (CPU rising at constant traffic): roll back.",
)
_MEM_CHECKS = (
    "Process memory (`mystocks_system_memory_usage_bytes{scope=\"process\"}`): a leak grows steadily.",
    "The in-process cache's size (`mystocks_cache_memory_usage_bytes{cache=\"memory\"}`).",
    "Other processes on the host (`ps aux --sort=-rss | head`).",
)
_DISK_CHECKS = (
    "`du -xh --max-depth=2 <mountpoint> | sort -h | tail`: logs, WAL, dumps?",
    "Log rotation and PostgreSQL WAL archiving (a failing archive_command keeps WAL forever).",
    "Extend the volume or delete old exports; PostgreSQL stops writing on a full disk.",
)


def _resource(name, expr, limit, for_, sev, prio, what, why, checks, unit="%"):
    return Alert(name, f"{expr} > {num(limit)}", for_, sev, "system", prio, "performance",
                 f"{what} on {{{{ $labels.instance }}}} is above {num(limit)}{unit}.",
                 f"{what} on {{{{ $labels.instance }}}}"
                 + (" ({{ $labels.mountpoint }})" if "Disk" in what else "")
                 + f" is {{{{ $value | humanize }}}}% (threshold {num(limit)}%).",
                 f"> {num(limit)}% for {for_}", why, checks)


SYSTEM = (
    _resource("HighCpuUsage", _CPU, c.CPU_PERCENT_WARNING, "10m", "warning", "P2", "Host CPU use",
              "At 80% a 2-core host has no headroom for the bursts at the market open and latency "
              "starts to climb. 10 minutes ignores start-up and batch jobs.", _CPU_CHECKS),
    _resource("CriticalCpuUsage", _CPU, c.CPU_PERCENT_CRITICAL, "5m", "critical", "P1", "Host CPU use",
              "At 95% requests queue behind each other: latency is about to break its SLO.",
              _CPU_CHECKS),
    _resource("HighMemoryUsage", _MEM, c.MEMORY_PERCENT_WARNING, "10m", "warning", "P2", "Host memory use",
              "85% leaves the page cache too little room (PostgreSQL and Redis read from it) and "
              "is the first sign of a leak. 10 minutes ignores a large report.", _MEM_CHECKS),
    _resource("CriticalMemoryUsage", _MEM, c.MEMORY_PERCENT_CRITICAL, "5m", "critical", "P1",
              "Host memory use",
              "At 95% the kernel's OOM killer is near and it picks the largest process: the API or "
              "PostgreSQL.", _MEM_CHECKS),
    _resource("LowDiskSpace", _DISK, c.DISK_PERCENT_WARNING, "15m", "warning", "P2", "Disk use",
              "85% used leaves days, not hours, to clean up at normal growth (logs, WAL, market "
              "data history). 15 minutes ignores temporary files.", _DISK_CHECKS),
    _resource("CriticalDiskSpace", _DISK, c.DISK_PERCENT_CRITICAL, "5m", "critical", "P1", "Disk use",
              "At 95% a burst of WAL or logs fills the disk within the hour, and PostgreSQL stops "
              "accepting writes on a full disk.", _DISK_CHECKS),
    Alert(
        "ApiFrequentRestarts",
        f'sum by (job, instance) (resets(mystocks_system_uptime_seconds{{{JOB}, scope="process"}}[30m])) >= 3',
        "1m", "warning", "system", "P2", "platform",
        "The API on {{ $labels.instance }} keeps restarting.",
        "The API process on {{ $labels.instance }} restarted {{ $value | humanize }} times in 30 "
        "minutes (threshold 3).",
        "≥ 3 restarts in 30m",
        "One restart is a deploy; three in half an hour is a crash loop (OOM kill, failing start-up "
        "check) that target-down alerts miss because each restart is quick.",
        ("The process logs just before each restart (`journalctl`/container logs): traceback or OOM kill?",
         "`dmesg | grep -i oom` and CriticalMemoryUsage.",
         "Start-up dependencies: PostgreSQL and Redis reachable, configuration valid."),
    ),
)

_DEP_CHECKS = (
    "Probe the dependency from the API host (`pg_isready`, `redis-cli ping`, `curl` the feed).",
    "The dependency's own logs and host; a failover in progress?",
    "Network: DNS, security groups, connection limits (`max_connections`, `maxclients`).",
)


def _down(name: str, dependency: str, what: str) -> Alert:
    return Alert(
        name, f'min by (job, dependency) ({_AVAIL}{{{JOB}, dependency="{dependency}"}}) == 0', "1m",
        "critical", "health", "P0", "platform",
        f"{what} is unreachable from the API.",
        f"The health probe of {{{{ $labels.job }}}} has not reached {what} for over a minute.",
        "probe fails for 1m",
        f"{what} is on the request path of nearly every call: without it the API fails or serves "
        "stale data. Four failed 15 s probes rule out one lost packet.",
        _DEP_CHECKS,
    )


HEALTH = (
    Alert(
        "ComponentUnhealthy",
        f"min by (job, component) (mystocks_health_component_status{{{JOB}}}) == 0", "2m",
        "warning", "health", "P1", "platform",
        "Component {{ $labels.component }} is unhealthy.",
        "The health check of {{ $labels.component }} in {{ $labels.job }} has failed for 2 minutes.",
        "status 0 for 2m",
        "Eight failed 15 s probes are no blip. A warning, because the specific alerts (database, "
        "cache, market data) say how bad it is and page when it is.",
        ("`GET /metrics/health` and the component's log lines.",
         "Which alerts fire for the same component (DatabaseConnectionPoolExhausted, RedisDown ...).",
         "Restart only the component's worker if the check is stuck, not the whole API."),
    ),
    Alert(
        "DependencyUnavailable",
        f'min by (job, dependency) ({_AVAIL}{{{JOB}, dependency!~"postgresql|redis"}}) == 0', "2m",
        "warning", "health", "P1", "platform",
        "Dependency {{ $labels.dependency }} is unavailable.",
        "{{ $labels.job }} has not reached {{ $labels.dependency }} for 2 minutes.",
        "probe fails for 2m (PostgreSQL and Redis have their own alerts)",
        "The feed, the Collector and SQLite are not on every request's path, so a short outage "
        "is degraded service rather than downtime: a warning after 2 minutes.",
        _DEP_CHECKS,
    ),
    Alert(
        "DependencyCritical",
        f'avg by (job, dependency) (avg_over_time({_AVAIL}{{{JOB}, dependency!~"postgresql|redis"}}[10m])) < 0.5',
        "2m", "critical", "health", "P0", "platform",
        "Dependency {{ $labels.dependency }} has been down most of the last 10 minutes.",
        "{{ $labels.dependency }} answered only {{ $value | humanizePercentage }} of probes from "
        "{{ $labels.job }} over the last 10 minutes (threshold 50%).",
        "availability < 50% over 10m, for 2m",
        "Down for more than half of 10 minutes, or flapping, has outlasted any restart or failover: "
        "a person must act. Catches flapping that the == 0 alerts miss.",
        _DEP_CHECKS,
    ),
    Alert(
        "ApiTargetDown", f"up{{{JOB}}} == 0", "2m", "critical", "health", "P0", "platform",
        "Prometheus cannot scrape {{ $labels.instance }}.",
        "The scrape of {{ $labels.job }} at {{ $labels.instance }} has failed for 2 minutes: the "
        "API is down or /metrics is broken.",
        "up == 0 for 2m",
        "Eight failed 15 s scrapes: the process is down or hung (a slow but alive API still "
        "answers /metrics). Every other API alert goes blind with it.",
        ("`curl -sf http://<instance>/metrics | head`: down, hung, or slow?",
         "The process/container status and its last log lines.",
         "Prometheus's targets page (`/targets`) for the scrape error."),
    ),
    _down("RedisDown", "redis", "Redis"),
    _down("PostgreSQLDown", "postgresql", "PostgreSQL"),
)

BUSINESS = (
    Alert(
        "NoActiveUsers", f"job:mystocks_user_active_sessions:sum{{{JOB}}} < 1\n{OPEN}", "15m",
        "warning", "business", "P2", "platform",
        "No user is signed in while the market is open.",
        "{{ $labels.job }} has had no active session for 15 minutes during the trading session.",
        "0 sessions for 15m while the market is open",
        "During the session there is always someone watching quotes; none for 15 minutes means "
        "sign-in or the session store is broken while the API looks healthy. Gated on the "
        "session, because nights and weekends are empty.",
        ("Try to sign in; look at `mystocks_user_logins_total{result=\"failure\"}`.",
         "The session store (Redis) and the auth provider.",
         "The front end's own errors (a broken release can stop the API from being called)."),
    ),
    Alert(
        "LowDataCompleteness",
        f"min by (job, dataset) (mystocks_data_quality_completeness_ratio{{{JOB}}}) < 0.95", "15m",
        "warning", "business", "P2", "data",
        "Dataset {{ $labels.dataset }} is incomplete.",
        "Only {{ $value | humanizePercentage }} of the expected {{ $labels.dataset }} records are "
        "present (threshold 95%).",
        "completeness < 95% for 15m",
        "Missing 5% of bars visibly distorts moving averages and other indicators users rely on. "
        "15 minutes lets a late batch arrive.",
        ("Which symbols/dates are missing (the data-quality job's report).",
         "Feed errors of the source that fills the dataset (MarketDataFeedErrors).",
         "Backfill from a second source once the gap is known."),
    ),
    Alert(
        "StaleData",
        f'max by (job, dataset) (mystocks_data_quality_freshness_seconds{{{JOB}, dataset=~"{REALTIME}"}})'
        f" > {num(c.STALE_DATA_SECONDS)}\n{OPEN}",
        "3m", "warning", "business", "P1", "data",
        "Real-time dataset {{ $labels.dataset }} is stale.",
        "The newest {{ $labels.dataset }} record is {{ $value | humanizeDuration }} old while the "
        "market is open (threshold 2m).",
        "real-time data older than 120 s for 3m, market open",
        "Twice the freshness SLO's 60 s: users see prices minutes old and trade on them. Only the "
        "real-time datasets, and only during the session.",
        ("Is the source still delivering (MarketDataProcessingBlocked, MarketDataFeedErrors)?",
         "The ingestion worker's queue and the database writes.",
         "An exchange holiday or a trading halt: then silence it."),
    ),
    Alert(
        "OrderLatencyHigh",
        f"job:mystocks_trading_order_latency_seconds:p95_5m{{{JOB}}} > 0.5", "5m",
        "warning", "business", "P1", "performance",
        "Order acknowledgement p95 is above 500 ms.",
        "p95 time from order submission to acknowledgement is {{ $value | humanizeDuration }} "
        "(threshold 500ms).",
        "order p95 > 0.5 s for 5m",
        "Broker gateways acknowledge in about 100 ms; at 500 ms the price moves between click and "
        "acknowledgement, which users feel as slippage. 0.5 s is a bucket bound.",
        ("The broker gateway's latency and status.",
         "Database write latency (orders are persisted before acknowledging).",
         "API CPU and event-loop blocking."),
    ),
    Alert(
        "OrderRejectionRateHigh",
        f"job:mystocks_trading_orders_rejected:ratio_rate5m{{{JOB}}} > 0.1\n"
        f"and on (job) job:mystocks_trading_orders:rate5m > 0.01",
        "10m", "warning", "business", "P1", "platform",
        "More than 10% of orders are rejected.",
        "{{ $value | humanizePercentage }} of orders were rejected over the last 5 minutes "
        "(threshold 10%).",
        "rejected share > 10% for 10m (with ≥ 0.01 orders/s)",
        "Normal rejections (funds, the ±10% price limits) are a few percent; 10% for 10 minutes "
        "is systematic: a bad reference price or a gateway/auth fault.",
        ("Rejection reasons in the order service logs.",
         "The reference prices (StaleData) used to validate limit orders.",
         "The broker gateway's status and credentials."),
    ),
    Alert(
        "DataAnomalySpike",
        f"job_dataset:mystocks_data_quality_anomalies:rate10m{{{JOB}}} * 60 > 1\n"
        "and job_dataset:mystocks_data_quality_anomalies:rate10m > 3 * job_dataset:mystocks_data_quality_anomalies:rate1d",
        "10m", "warning", "business", "P2", "data",
        "Data anomalies spike in {{ $labels.dataset }}.",
        "{{ $labels.dataset }} shows {{ $value | humanize }} anomalies/min, over 3x its daily average.",
        "anomalies > 3x the 1-day rate and > 1/min, for 10m",
        "Relative to the dataset's own baseline, because some datasets always have a few outliers; "
        "the 1/min floor keeps a quiet dataset's first anomalies from alerting.",
        ("Which kind: `sum by (kind) (rate(mystocks_data_quality_anomalies_total[10m]))`.",
         "The source feeding the dataset: a provider sending bad ticks or duplicates?",
         "Market events (a limit-up wave) that are real, not errors: then silence it."),
    ),
)

_ALERTS_FIRING = 'ALERTS{alertstate="firing", severity=~"critical|warning"'

AGGREGATED = (
    Alert(
        "MultipleAlertsActive",
        f'count({_ALERTS_FIRING}, category!~"aggregated|meta"}}) >= 5', "5m",
        "warning", "aggregated", "P1", "platform",
        "{{ $value }} alerts are firing at once.",
        "{{ $value }} critical/warning alerts have been firing together for 5 minutes: look for a "
        "common cause before working them one by one.",
        "≥ 5 warning/critical alerts firing for 5m",
        "Five alerts at once rarely have five independent causes. This one says so, and routing "
        "groups them, so on-call starts at the cause.",
        ("The Active Alerts panel: which category fired first?",
         "Shared dependencies (PostgreSQL, Redis, the network) and the last deploy.",
         "Inhibition: once the cause is found, silence the symptoms."),
    ),
    Alert(
        "ServiceDegradation",
        f'count(count by (category) ({_ALERTS_FIRING}, '
        f'category=~"api|database|cache|websocket|market_data|health"}})) >= 2',
        "5m", "critical", "aggregated", "P0", "platform",
        "MyStocks is degraded in {{ $value }} areas at once.",
        "Warning or critical alerts are firing in {{ $value }} service categories (API, database, "
        "cache, WebSocket, market data, health) for 5 minutes.",
        "alerts firing in ≥ 2 service categories for 5m",
        "Two parts of the request path in trouble together (say the API and the database) is "
        "an incident even when each alert alone is only a warning: page.",
        ("The Active Alerts panel: which categories, and which fired first?",
         "The dependency the categories share (database or cache behind a slow API).",
         "Declare an incident and post a status update if users are affected."),
    ),
)

META = (
    Alert(
        "Watchdog", "vector(1)", "0m", "info", "meta", "P3", "platform",
        "The alerting pipeline is alive.",
        "Always firing. It is routed to the heartbeat (dead man's switch) receiver; when that "
        "receiver stops hearing it, Prometheus or Alertmanager is broken.",
        "always",
        "A dead man's switch: the absence of this alert is the alert.",
        ("The heartbeat service: when did it last hear from Alertmanager?",
         "Prometheus's `/rules` and Alertmanager's `/#/alerts` pages.",
         "The Alertmanager route for `heartbeat=\"true\"`."),
        extra_labels={"heartbeat": "true"},
    ),
    Alert(
        "ApiTargetAbsent", f"absent(up{{{JOB}}})", "5m", "critical", "meta", "P1", "platform",
        "Prometheus has no target for the MyStocks API.",
        "No `up` series exists for job {{ $labels.job }}: service discovery or the scrape config "
        "lost the API, and every API alert is blind.",
        "no up series for 5m",
        "ApiTargetDown needs an `up` series; when the target itself vanishes only absent() notices. "
        "5 minutes covers a Prometheus reload.",
        ("`prometheus/prometheus.yml`: is the job still there and named mystocks-api?",
         "Prometheus's `/targets` and `/service-discovery` pages.",
         "A recent change to the deployment's labels or DNS name."),
    ),
    Alert(
        "HttpMetricsAbsent",
        f"absent(http_server_request_duration_seconds_count{{{JOB}}})\nand on () (count(up{{{JOB}}} == 1) > 0)",
        "15m", "warning", "meta", "P2", "platform",
        "The API is scraped but exports no HTTP metrics.",
        "{{ $labels.job }} is up but has exported no http_server_request_duration_seconds for 15 "
        "minutes: the HTTP instrumentation is not running.",
        "up, but no HTTP series for 15m",
        "opentelemetry-instrument swallows a failing distro, leaving the app running "
        "uninstrumented: the API, latency and SLO alerts then see nothing. 15 minutes: health "
        "checks alone make requests within that time.",
        ("The API's start-up log: a traceback from the distro or configurator?",
         "`OTEL_SEMCONV_STABILITY_OPT_IN=http` and `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`.",
         "`curl /metrics | grep http_server` on the instance."),
    ),
    Alert(
        "TelemetryMeasurementsDropped",
        f"sum by (job, metric, reason) (rate(mystocks_telemetry_dropped_measurements_total{{{JOB}}}[15m])) * 60 > 0",
        "15m", "info", "meta", "P3", "platform",
        "Measurements of {{ $labels.metric }} are being dropped.",
        "{{ $labels.metric }} drops {{ $value | humanize }} measurements/min ({{ $labels.reason }}).",
        "any drop for 15m",
        "A bug in the instrumentation, not an incident: info, for the dashboard and the next "
        "working day.",
        ("`reason`: nan/negative means a caller passes bad values; error means a recorder raised.",
         "The code that records the metric named in the `metric` label.",
         "The API log for the recorder's exception."),
    ),
    Alert(
        "TelemetryCardinalityOverflow",
        f'sum by (job, metric) (rate(mystocks_telemetry_sanitized_attributes_total{{{JOB}, reason="overflow"}}[10m])) * 60\n> 0',
        "10m", "warning", "meta", "P2", "platform",
        "{{ $labels.metric }} exceeds its cardinality limit.",
        "{{ $labels.metric }} records into its overflow series ({{ $value | humanize }} "
        "attributes/min): its per-label panels and alerts are now incomplete.",
        "any overflow for 10m",
        "Past the limit the SDK merges new series into one overflow series, so dashboards silently "
        "lie. Some label took unbounded values.",
        ("Which label grows: `count by (__name__) ({__name__=~\".+\"})` and the metric's labels.",
         "A route or table label that receives raw paths/IDs instead of templates.",
         "Bound the label in the catalog (values=...) or raise the limit deliberately."),
    ),
)

ALERTS = MARKET_DATA + SYSTEM + HEALTH + BUSINESS + AGGREGATED + META
