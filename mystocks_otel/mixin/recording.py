"""Recording rules (``level:metric:operations``) for the dashboards, the alerts and the SLOs.

The ``job:*``/``job_*:*`` series are also the 1-year aggregates: they are what the long-term
store keeps (docs/ALERTING.md, "Retention").
"""

from __future__ import annotations

from mystocks_otel.mixin import config
from mystocks_otel.mixin.rulekit import JOB, Group, Record, num

HTTP = "http_server_request_duration_seconds"
REALTIME = "|".join(config.REALTIME_DATASETS)
MIN_FROM, MIN_TO = config.TRADING_SESSION_UTC_MINUTES
FRESHNESS_SLO = next(s for s in config.SLOS if s.name == "market-data-freshness")


def _ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator; 0 (not nothing) when the numerator has no series yet,
    nothing (not NaN or +Inf) when the denominator is 0."""
    return f"({numerator} or {denominator} * 0)\n/\n({denominator} > 0)"


def _quantile(q: float, metric: str, by: str, window: str = "5m", extra: str = "") -> str:
    sel = f"{JOB}, {extra}" if extra else JOB
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{window}])))"


def _sum_rate(metric: str, by: str, window: str = "5m", extra: str = "") -> str:
    sel = f"{JOB}, {extra}" if extra else JOB
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{window}]))"


HTTP_GROUP = Group("mystocks-http.rules", (
    Record("job:http_server_requests:rate5m", _sum_rate(f"{HTTP}_count", "job"),
           "Request rate of the API (panel HTTP Request Rate; traffic floor of the ratio alerts)."),
    Record("job_method_route_code:http_server_requests:rate5m",
           _sum_rate(f"{HTTP}_count", "job, http_request_method, http_route, http_response_status_code"),
           "Request rate by method, route and status, as the dashboard shows it. Routes are "
           "templates, so this stays far below the 10,000-series budget."),
    Record("job:http_server_requests_errors:rate5m",
           _sum_rate(f"{HTTP}_count", "job", extra='http_response_status_code=~"5.."'),
           "5xx responses only: a 4xx is the client's fault and does not spend the error budget."),
    Record("job:http_server_requests_errors:ratio_rate5m",
           _ratio("job:http_server_requests_errors:rate5m", "job:http_server_requests:rate5m"),
           "Share of requests answered with a 5xx; 0 while no 5xx was ever seen, absent with no traffic."),
    Record("job:http_server_requests_client_errors:ratio_rate5m",
           _ratio(_sum_rate(f"{HTTP}_count", "job", extra='http_response_status_code=~"4.."'),
                  "job:http_server_requests:rate5m"),
           "Share of 4xx responses (panel HTTP Error Rate): a jump means a broken client release."),
    *(Record(f"job:{HTTP}:p{int(q * 100)}_5m", _quantile(q, HTTP, "job"),
             f"API latency p{int(q * 100)} (panel HTTP Duration; p95 drives ApiHighResponseTime). "
             "Aggregated by le because OTel adds scope and instance labels.")
      for q in (0.5, 0.95, 0.99)),
    Record(f"job_route:{HTTP}:p95_5m", _quantile(0.95, HTTP, "job, http_route"),
           "p95 by route: which endpoint is slow when the API as a whole is."),
))

DATABASE_GROUP = Group("mystocks-database.rules", (
    Record("job_pool:mystocks_db_connections:usage_ratio",
           "sum by (job, pool) (mystocks_db_connections_active{%s})\n/\n"
           "(sum by (job, pool) (mystocks_db_connections_max{%s}) > 0)" % (JOB, JOB),
           "Checked-out share of each pool's maximum (size + overflow), summed over instances."),
    Record("job:mystocks_db_queries:rate5m",
           _sum_rate("mystocks_db_query_duration_seconds_count", "job"),
           "Statement rate: the denominator of the slow-query and error ratios."),
    Record("job:mystocks_db_slow_queries:rate5m", _sum_rate("mystocks_db_slow_queries_total", "job"),
           "Slow statements per second."),
    Record("job_table:mystocks_db_slow_queries:rate5m",
           _sum_rate("mystocks_db_slow_queries_total", "job, operation, table"),
           "Slow statements by operation and table (panel Slow Queries)."),
    Record("job:mystocks_db_slow_queries:ratio_rate5m",
           _ratio("job:mystocks_db_slow_queries:rate5m", "job:mystocks_db_queries:rate5m"),
           "Share of statements slower than MYSTOCKS_OTEL_SLOW_QUERY_SECONDS."),
    Record("job:mystocks_db_query_errors:ratio_rate5m",
           _ratio(_sum_rate("mystocks_db_query_errors_total", "job"), "job:mystocks_db_queries:rate5m"),
           "Share of statements that raised."),
    Record("job:mystocks_db_query_duration_seconds:p99_5m",
           _quantile(0.99, "mystocks_db_query_duration_seconds", "job"),
           "Query latency p99: the tail that meets the statement timeout first."),
))

CACHE_GROUP = Group("mystocks-cache.rules", (
    Record("job_cache:mystocks_cache_hits:rate5m", _sum_rate("mystocks_cache_hits_total", "job, cache"),
           "Cache hits per second (panel Cache Hits vs Misses)."),
    Record("job_cache:mystocks_cache_misses:rate5m", _sum_rate("mystocks_cache_misses_total", "job, cache"),
           "Cache misses per second."),
    Record("job_cache:mystocks_cache_lookups:rate5m",
           "(job_cache:mystocks_cache_hits:rate5m or job_cache:mystocks_cache_misses:rate5m * 0)\n+\n"
           "(job_cache:mystocks_cache_misses:rate5m or job_cache:mystocks_cache_hits:rate5m * 0)",
           "Lookups per second; correct even while hits or misses have no series yet."),
    Record("job_cache:mystocks_cache_hit:ratio_rate5m",
           "(job_cache:mystocks_cache_hits:rate5m or job_cache:mystocks_cache_misses:rate5m * 0)\n/\n"
           "(job_cache:mystocks_cache_lookups:rate5m > 0)",
           "Hit ratio over the last 5 min (the gauge mystocks_cache_hit_ratio is since start, "
           "which hides a sudden drop)."),
    Record("job:mystocks_redis_commands:rate5m",
           _sum_rate("mystocks_redis_command_duration_seconds_count", "job"), "Redis commands per second."),
    Record("job:mystocks_redis_command_errors:ratio_rate5m",
           _ratio(_sum_rate("mystocks_redis_command_errors_total", "job"), "job:mystocks_redis_commands:rate5m"),
           "Share of Redis commands that raised."),
))

WEBSOCKET_GROUP = Group("mystocks-websocket.rules", (
    Record("job_instance:mystocks_websocket_active_connections:sum",
           f"sum by (job, instance) (mystocks_websocket_active_connections{{{JOB}}})",
           "Open connections per process: capacity is per process, so that is what the alerts compare."),
    Record("job_namespace:mystocks_websocket_active_connections:sum",
           f"sum by (job, namespace) (mystocks_websocket_active_connections{{{JOB}}})",
           "Open connections by namespace (panel WebSocket Connections)."),
    Record("job_direction_type:mystocks_websocket_messages:rate5m",
           _sum_rate("mystocks_websocket_messages_total", "job, direction, message_type"),
           "Messages per second (panel WebSocket Messages)."),
    Record("job:mystocks_websocket_connections_opened:rate5m",
           _sum_rate("mystocks_websocket_connections_opened_total", "job"), "Connections accepted per second."),
    Record("job:mystocks_websocket_connection_errors:ratio_rate5m",
           _ratio(_sum_rate("mystocks_websocket_connection_errors_total", "job"),
                  "job:mystocks_websocket_connections_opened:rate5m"),
           "Connection errors per connection opened."),
))

MARKET_GROUP = Group("mystocks-market-data.rules", (
    Record("mystocks:trading_session:open",
           f"vector(1)\n  and on () (day_of_week() >= 1 and day_of_week() <= 5)\n"
           f"  and on () (hour() * 60 + minute() >= {MIN_FROM} and hour() * 60 + minute() < {MIN_TO})",
           "1 while the A-share market is open (Mon-Fri 09:30-15:00 CST = 01:30-07:00 UTC), "
           "absent otherwise. Business and freshness rules are gated on it: at night no data "
           "flows and nobody trades, which is not an incident. Exchange holidays are not known "
           "here: silence the market-data alerts on them (docs/runbooks.md)."),
    Record("job_source:mystocks_market_data_points_processed:rate5m",
           _sum_rate("mystocks_market_data_points_processed_total", "job, source"),
           "Points processed per second by source (panel Market Data Points)."),
    *(Record(f"job_source:mystocks_market_data_processing_duration_seconds:p{int(q * 100)}_5m",
             _quantile(q, "mystocks_market_data_processing_duration_seconds", "job, source"),
             f"Processing latency p{int(q * 100)} by source (panel Market Data Latency).")
      for q in (0.95, 0.99)),
    Record("job_source:mystocks_market_data_feed_errors:rate5m",
           _sum_rate("mystocks_market_data_feed_errors_total", "job, source"), "Feed errors per second by source."),
    Record("job_dataset:mystocks_data_quality_anomalies:rate10m",
           _sum_rate("mystocks_data_quality_anomalies_total", "job, dataset", "10m"),
           "Anomalies per second now, by dataset."),
    Record("job_dataset:mystocks_data_quality_anomalies:rate1d",
           _sum_rate("mystocks_data_quality_anomalies_total", "job, dataset", "1d"),
           "Anomalies per second over a day: the baseline a spike is compared with."),
    Record("job_dataset:mystocks_data_quality_freshness_seconds:max",
           f"max by (job, dataset) (mystocks_data_quality_freshness_seconds{{{JOB}}})",
           "Age of the newest record by dataset, worst instance."),
    Record("job:mystocks_data_quality_realtime_fresh:bool",
           f'(max by (job) (mystocks_data_quality_freshness_seconds{{{JOB}, dataset=~"{REALTIME}"}})'
           f" < bool {num(FRESHNESS_SLO.threshold_seconds)})\n  and on () mystocks:trading_session:open",
           "1 when every real-time feed is fresher than the freshness SLO's threshold, 0 when "
           "one is not; recorded only while the market is open. The freshness SLI is its mean."),
))

BUSINESS_GROUP = Group("mystocks-business.rules", (
    Record("job:mystocks_user_active_sessions:sum",
           f"sum by (job) (mystocks_user_active_sessions{{{JOB}}})", "Signed-in sessions."),
    Record("job_platform:mystocks_user_active_sessions:sum",
           f"sum by (job, platform) (mystocks_user_active_sessions{{{JOB}}})",
           "Sessions by platform (panel User Sessions)."),
    Record("job:mystocks_trading_orders:rate5m", _sum_rate("mystocks_trading_orders_total", "job"),
           "Orders per second."),
    Record("job:mystocks_trading_orders_rejected:ratio_rate5m",
           _ratio(_sum_rate("mystocks_trading_orders_total", "job", extra='status="rejected"'),
                  "job:mystocks_trading_orders:rate5m"),
           "Share of orders rejected."),
    Record("job:mystocks_trading_order_latency_seconds:p95_5m",
           _quantile(0.95, "mystocks_trading_order_latency_seconds", "job"),
           "Order acknowledgement latency p95."),
))

SYSTEM_GROUP = Group("mystocks-system.rules", (
    Record("job_instance:mystocks_system_cpu_utilization_percent:host",
           f'max by (job, instance) (mystocks_system_cpu_utilization_percent{{{JOB}, scope="system"}})',
           "Host CPU per instance: what the CPU alerts and the year-long capacity trend use."),
    Record("job_instance:mystocks_system_memory_utilization_percent:host",
           f'max by (job, instance) (mystocks_system_memory_utilization_percent{{{JOB}, scope="system"}})',
           "Host memory use per instance."),
    Record("job_instance_mountpoint:mystocks_system_disk_utilization_percent:max",
           f"max by (job, instance, mountpoint) (mystocks_system_disk_utilization_percent{{{JOB}}})",
           "Disk use per data disk."),
    Record("severity:alerts_firing:count",
           'count by (severity) (ALERTS{alertstate="firing"})',
           "Firing alerts by severity (panel Active Alerts)."),
))


def groups() -> tuple[Group, ...]:
    return (HTTP_GROUP, DATABASE_GROUP, CACHE_GROUP, WEBSOCKET_GROUP, MARKET_GROUP, BUSINESS_GROUP,
            SYSTEM_GROUP)
