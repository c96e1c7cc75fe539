"""Alerts on the request path: API, database, cache and WebSocket."""

from __future__ import annotations

from mystocks_otel.mixin import config as c
from mystocks_otel.mixin.rulekit import JOB, Alert, num

_FLOOR = f"and on (job) job:http_server_requests:rate5m > {num(c.MIN_REQUEST_RATE)}"
_P95 = f"job:http_server_request_duration_seconds:p95_5m{{{JOB}}}"
_ERR = f"job:http_server_requests_errors:ratio_rate5m{{{JOB}}}"
_POOL = "job_pool:mystocks_db_connections:usage_ratio"
_HIT = "job_cache:mystocks_cache_hit:ratio_rate5m"
_HIT_FLOOR = f"and on (job, cache) job_cache:mystocks_cache_lookups:rate5m > {num(c.MIN_REQUEST_RATE)}"
_WS = "job_instance:mystocks_websocket_active_connections:sum"

_LATENCY_CHECKS = (
    "Which routes are slow: `job_route:http_server_request_duration_seconds:p95_5m` on the dashboard.",
    "Database: pool usage, slow queries and query p99 (the usual cause of slow API calls).",
    "Host CPU and the cache hit ratio: a cold or failing cache sends every read to PostgreSQL.",
)
_ERROR_CHECKS = (
    "Which routes and status codes fail: panel HTTP Error Rate, then the API logs for tracebacks.",
    "Dependencies: are PostgreSQLDown, RedisDown or DependencyUnavailable firing too?",
    "The last deploy or config change: roll back first, investigate after.",
)
_POOL_CHECKS = (
    "Which pool: the `pool` label; then `pg_stat_activity` for long-running or idle-in-transaction sessions.",
    "Slow queries (DatabaseSlowQueries): slow statements hold connections longer.",
    "Traffic: a request spike needs a larger pool (pool_size/max_overflow) or more replicas.",
)

API = (
    Alert(
        "ApiHighResponseTime", f"{_P95} > {num(c.API_LATENCY_P95_WARNING_SECONDS)}", "5m",
        "warning", "api", "P1", "performance",
        "API p95 latency is above 1 s.",
        "p95 latency of {{ $labels.job }} is {{ $value | humanizeDuration }} over the last 5 minutes "
        "(threshold 1s).",
        "p95 > 1 s for 5m",
        "The specification's threshold. 1 s is also the api-latency SLO's bound, so a p95 above it "
        "means over 5% of requests miss the SLO: 5x its 1% budget. 5 minutes rides out a GC pause "
        "or a cold cache after a deploy.",
        _LATENCY_CHECKS,
    ),
    Alert(
        "ApiCriticalResponseTime", f"{_P95} > {num(c.API_LATENCY_P95_CRITICAL_SECONDS)}", "3m",
        "critical", "api", "P0", "performance",
        "API p95 latency is above 2.5 s.",
        "p95 latency of {{ $labels.job }} is {{ $value | humanizeDuration }} over the last 5 minutes "
        "(threshold 2.5s): one request in twenty takes longer than users wait.",
        "p95 > 2.5 s for 3m",
        "2.5 s is a histogram bucket bound (so the estimate is exact there) and 2.5x the warning. Web "
        "clients retry or give up at about 3 s, so the slowest 5% of requests are effectively failing "
        "and the retries add load: page after 3 minutes, not 5.",
        _LATENCY_CHECKS,
    ),
    Alert(
        "ApiHighErrorRate", f"{_ERR} > {num(c.API_ERROR_RATIO_WARNING)}\n{_FLOOR}", "5m",
        "warning", "api", "P1", "platform",
        "More than 1% of API requests fail with a 5xx.",
        "{{ $value | humanizePercentage }} of requests to {{ $labels.job }} answered 5xx over the "
        "last 5 minutes (threshold 1%).",
        "5xx ratio > 1% for 5m (with ≥ 0.1 req/s)",
        "1% is 10x the api-availability budget (0.1%): sustained, the month's budget is gone in 3 "
        "days. The SLO burn alerts catch slower burns. Requiring 0.1 req/s keeps one failure among "
        "a handful of night-time requests from alerting.",
        _ERROR_CHECKS,
    ),
    Alert(
        "ApiCriticalErrorRate", f"{_ERR} > {num(c.API_ERROR_RATIO_CRITICAL)}\n{_FLOOR}", "2m",
        "critical", "api", "P0", "platform",
        "More than 5% of API requests fail with a 5xx.",
        "{{ $value | humanizePercentage }} of requests to {{ $labels.job }} answered 5xx over the "
        "last 5 minutes (threshold 5%).",
        "5xx ratio > 5% for 2m (with ≥ 0.1 req/s)",
        "5% is 50x the availability budget: the month's budget is gone in 14 hours, and one user "
        "action in twenty fails. Two minutes is enough to rule out a single bad scrape.",
        _ERROR_CHECKS,
    ),
)

DATABASE = (
    Alert(
        "DatabaseHighConnectionUsage", f"{_POOL} > {num(c.DB_POOL_USAGE_WARNING)}", "10m",
        "warning", "database", "P2", "performance",
        "Database pool {{ $labels.pool }} is over 80% used.",
        "{{ $value | humanizePercentage }} of the connections pool {{ $labels.pool }} may open are "
        "checked out (threshold 80%).",
        "active/max > 80% for 10m",
        "Above 80% a burst (the market open) checks out the rest and requests queue for up to "
        "pool_timeout (30 s in SQLAlchemy). 10 minutes ignores the short bursts every day has.",
        _POOL_CHECKS,
    ),
    Alert(
        "DatabaseConnectionPoolExhausted", f"{_POOL} >= {num(c.DB_POOL_USAGE_EXHAUSTED)}", "2m",
        "critical", "database", "P0", "platform",
        "Database pool {{ $labels.pool }} is exhausted.",
        "Every connection pool {{ $labels.pool }} may open is checked out; new requests wait for "
        "pool_timeout and then fail.",
        "active/max ≥ 100% for 2m",
        "A full pool for 2 minutes means requests are already waiting out pool_timeout and failing "
        "with 500s: an outage in progress, so it pages.",
        _POOL_CHECKS,
    ),
    Alert(
        "DatabaseSlowQueries",
        f"job:mystocks_db_slow_queries:ratio_rate5m{{{JOB}}} > {num(c.DB_SLOW_QUERY_RATIO_WARNING)}\n"
        f"and on (job) job:mystocks_db_queries:rate5m > {num(c.MIN_REQUEST_RATE)}",
        "10m", "warning", "database", "P2", "performance",
        "More than 5% of SQL statements are slow.",
        "{{ $value | humanizePercentage }} of statements in {{ $labels.job }} were slower than "
        "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS over the last 5 minutes (threshold 5%).",
        "slow share > 5% for 10m (with ≥ 0.1 q/s)",
        "A few slow statements (reports, end-of-day jobs) are normal; 5% of all statements for 10 "
        "minutes is a missing index, a lock or a bloated table. The query-rate floor keeps a lone "
        "night-time batch query from alerting.",
        ("Which tables: `job_table:mystocks_db_slow_queries:rate5m` (panel Slow Queries).",
         "`pg_stat_statements` / `EXPLAIN ANALYZE` of the top statements; look for locks in `pg_locks`.",
         "Recent schema or data-volume changes (a new table scan after a migration)."),
    ),
    Alert(
        "DatabaseQueryTimeoutRisk",
        f"job:mystocks_db_query_duration_seconds:p99_5m{{{JOB}}} > {num(c.DB_STATEMENT_TIMEOUT_SECONDS / 2)}",
        "5m", "warning", "database", "P1", "performance",
        "SQL p99 latency is at half the statement timeout.",
        "p99 query latency of {{ $labels.job }} is {{ $value | humanizeDuration }} (threshold 5s, "
        "statement timeout 10s).",
        "query p99 > 5 s for 5m",
        "At half the 10 s statement timeout the slowest 1% is one slowdown away from timing out "
        "(and timeouts become 5xx). 5 s is a bucket bound, so the estimate is exact there.",
        ("Long-running statements: `SELECT pid, now() - query_start, query FROM pg_stat_activity ORDER BY 2 DESC`.",
         "Lock waits (`pg_locks` with `granted = false`) and autovacuum on big tables.",
         "Database host I/O and CPU."),
    ),
    Alert(
        "DatabaseQueryErrors",
        f"job:mystocks_db_query_errors:ratio_rate5m{{{JOB}}} > {num(c.API_ERROR_RATIO_WARNING)}\n"
        f"and on (job) job:mystocks_db_queries:rate5m > {num(c.MIN_REQUEST_RATE)}",
        "5m", "warning", "database", "P1", "platform",
        "More than 1% of SQL statements fail.",
        "{{ $value | humanizePercentage }} of statements in {{ $labels.job }} raised over the last "
        "5 minutes (threshold 1%).",
        "error share > 1% for 5m (with ≥ 0.1 q/s)",
        "Same bar as the API's 5xx ratio: a failed statement nearly always becomes a failed request. "
        "IntegrityErrors from user input stay well below 1%.",
        ("Which error types: `sum by (error_type) (rate(mystocks_db_query_errors_total[5m]))`.",
         "OperationalError/InterfaceError mean connectivity: check PostgreSQLDown and the network.",
         "ProgrammingError after a deploy means a migration was not applied."),
    ),
)

CACHE = (
    Alert(
        "CacheLowHitRate", f"{_HIT}{{{JOB}}} < {num(c.CACHE_HIT_RATIO_WARNING)}\n{_HIT_FLOOR}", "15m",
        "warning", "cache", "P2", "performance",
        "Cache {{ $labels.cache }} hit ratio is below 80%.",
        "The {{ $labels.cache }} cache answered {{ $value | humanizePercentage }} of lookups over "
        "the last 5 minutes (threshold 80%).",
        "hit ratio < 80% for 15m (with ≥ 0.1 lookups/s)",
        "Quote lookups hit over 90% when TTLs are right (many readers per symbol). Below 80% the "
        "database and the rate-limited providers take twice the load. 15 minutes lets the cache "
        "warm up after a restart or at the market open.",
        ("Evictions (`mystocks_cache_evictions_total`) and memory: a full cache evicts what it needs.",
         "TTLs and key patterns changed in the last deploy (a key that embeds a timestamp never hits).",
         "RedisDown / RedisCommandErrors: errors count as misses."),
    ),
    Alert(
        "CacheCriticalHitRate", f"{_HIT}{{{JOB}}} < {num(c.CACHE_HIT_RATIO_CRITICAL)}\n{_HIT_FLOOR}", "10m",
        "critical", "cache", "P1", "performance",
        "Cache {{ $labels.cache }} hit ratio is below 50%.",
        "The {{ $labels.cache }} cache answered only {{ $value | humanizePercentage }} of lookups "
        "over the last 5 minutes (threshold 50%).",
        "hit ratio < 50% for 10m (with ≥ 0.1 lookups/s)",
        "Below 50% more lookups miss than hit: the cache no longer shields PostgreSQL and the "
        "market-data providers (akshare and tushare throttle), and API latency follows within minutes.",
        ("Is Redis reachable (RedisDown, RedisCommandErrors)?",
         "Was the cache flushed or restarted (`mystocks_cache_keys` dropped)?",
         "Evictions and memory: raise maxmemory or shorten the TTL of large values."),
    ),
    Alert(
        "CacheHighMemoryUsage",
        f"max by (job, instance, cache) (mystocks_cache_memory_usage_bytes{{{JOB}}})\n"
        f"> {num(0.9 * c.CACHE_MEMORY_LIMIT_BYTES)}",
        "10m", "warning", "cache", "P2", "performance",
        "Cache {{ $labels.cache }} uses over 90% of its memory limit.",
        "The {{ $labels.cache }} cache on {{ $labels.instance }} uses {{ $value | humanize1024 }}B "
        "(limit 512MiB, threshold 90%).",
        "memory > 90% of CACHE_MEMORY_LIMIT_BYTES (512 MiB) for 10m",
        "At 100% of maxmemory Redis evicts (allkeys-lru) or refuses writes (noeviction). 10% "
        "headroom is minutes of growth at the market open: time to act before evictions start. "
        "Set CACHE_MEMORY_LIMIT_BYTES to your Redis maxmemory.",
        ("`redis-cli INFO memory` and `--bigkeys`: which keys grew.",
         "Keys without a TTL (`mystocks_cache_keys` rising steadily).",
         "Evictions: `rate(mystocks_cache_evictions_total[5m])`."),
    ),
    Alert(
        "RedisCommandErrors",
        f"job:mystocks_redis_command_errors:ratio_rate5m{{{JOB}}} > {num(c.API_ERROR_RATIO_WARNING)}\n"
        f"and on (job) job:mystocks_redis_commands:rate5m > {num(c.MIN_REQUEST_RATE)}",
        "5m", "warning", "cache", "P2", "platform",
        "More than 1% of Redis commands fail.",
        "{{ $value | humanizePercentage }} of Redis commands from {{ $labels.job }} raised over the "
        "last 5 minutes (threshold 1%).",
        "error share > 1% for 5m (with ≥ 0.1 cmd/s)",
        "Redis commands should essentially never fail; 1% sustained means timeouts, a failover "
        "or memory refusals (OOM with noeviction) rather than a blip.",
        ("Which error types: `sum by (error_type) (rate(mystocks_redis_command_errors_total[5m]))`.",
         "ReadOnlyError means a failover left the app on a replica; TimeoutError means load or network.",
         "Redis memory (CacheHighMemoryUsage) and `redis-cli INFO stats`."),
    ),
)

_WS_CHECKS = (
    "Per-namespace counts (panel WebSocket Connections): one client reconnecting in a loop?",
    "Connections opened vs. closed: `rate(mystocks_websocket_connections_opened_total[5m])`.",
    "Add API replicas behind the load balancer before the per-process limit is reached.",
)

WEBSOCKET = (
    Alert(
        "WebSocketHighConnectionCount",
        f"{_WS}{{{JOB}}} > {num(0.8 * c.WEBSOCKET_CONNECTION_CAPACITY)}", "5m",
        "warning", "websocket", "P2", "performance",
        "{{ $labels.instance }} holds over 80% of its WebSocket capacity.",
        "{{ $labels.instance }} has {{ $value | humanize }} open WebSocket connections (capacity "
        "1000 per process, threshold 800).",
        "open connections > 80% of capacity (800/process) for 5m",
        "Every quote broadcast is fanned out to each connection in one event loop; past about 1000 "
        "per process the broadcast delay grows with every client (measure your capacity and set "
        "WEBSOCKET_CONNECTION_CAPACITY). 80% leaves time to scale out.",
        _WS_CHECKS,
    ),
    Alert(
        "WebSocketCriticalConnectionCount",
        f"{_WS}{{{JOB}}} > {num(0.95 * c.WEBSOCKET_CONNECTION_CAPACITY)}", "2m",
        "critical", "websocket", "P1", "performance",
        "{{ $labels.instance }} is at its WebSocket capacity.",
        "{{ $labels.instance }} has {{ $value | humanize }} open WebSocket connections (capacity "
        "1000 per process, threshold 950).",
        "open connections > 95% of capacity (950/process) for 2m",
        "At 95% the next burst (the market open) pushes the process past the point where quotes "
        "arrive late and connections are dropped.",
        _WS_CHECKS,
    ),
    Alert(
        "WebSocketConnectionErrors",
        f"job:mystocks_websocket_connection_errors:ratio_rate5m{{{JOB}}} > 0.05\n"
        f"and on (job) job:mystocks_websocket_connections_opened:rate5m > 0.01",
        "10m", "warning", "websocket", "P2", "platform",
        "More than 5% of WebSocket connections end in error.",
        "{{ $value | humanizePercentage }} WebSocket connection errors per connection opened in "
        "{{ $labels.job }} over the last 5 minutes (threshold 5%).",
        "errors / connections opened > 5% for 10m (with ≥ 0.01 opened/s)",
        "Browsers reconnect by themselves, and laptops sleeping or phones changing networks close "
        "a few connections abnormally; 5% for 10 minutes is a server-side fault. The floor (3 "
        "connections in 5 minutes) ignores one error at night.",
        ("Which reason: `sum by (reason) (rate(mystocks_websocket_connection_errors_total[5m]))`.",
         "`exception`: the API logs; `rejected`: authentication or origin checks; `abnormal_close`: proxies' idle timeouts.",
         "The load balancer's WebSocket timeouts and the last deploy."),
    ),
)

ALERTS = API + DATABASE + CACHE + WEBSOCKET
