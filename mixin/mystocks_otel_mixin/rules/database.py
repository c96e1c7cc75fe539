"""Database: pool usage, slow statements, statement errors and the timeout-risk tail."""

from __future__ import annotations

from mystocks_otel_mixin import config as c
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, dur, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

_POOL_CHECKS = (
    "Which pool: the `pool` label; then `pg_stat_activity` for long-running or idle-in-transaction sessions.",
    "Slow queries (DatabaseSlowQueries): slow statements hold connections longer.",
    "Traffic: a request spike needs a larger pool (pool_size/max_overflow) or more replicas.",
)


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-database.rules", (
        Record(record="job_pool:mystocks_db_connections:usage_ratio",
               expr=f"{q.agg('sum', 'job, pool', 'mystocks_db_connections_active')}\n/\n"
               f"({q.agg('sum', 'job, pool', 'mystocks_db_connections_max')} > 0)",
               why="Checked-out share of each pool's maximum over all instances (panel and capacity "
               "trend). Not what the alerts read: one exhausted instance hides behind an idle one."),
        Record(record="job_instance_pool:mystocks_db_connections:usage_ratio",
               expr=f"{q.agg('sum', 'job, instance, pool', 'mystocks_db_connections_active')}\n/\n"
               f"({q.agg('sum', 'job, instance, pool', 'mystocks_db_connections_max')} > 0)",
               why="Checked-out share of each instance's pool: a pool belongs to one process, so a "
               "full pool on api-1 makes api-1's requests wait whatever api-2's pool holds."),
        Record(record="job:mystocks_db_queries:rate5m",
               expr=q.sum_rate("mystocks_db_query_duration_seconds_count", "job"),
               why="Statement rate: the denominator of the slow-query and error ratios."),
        Record(record="job:mystocks_db_slow_queries:rate5m",
               expr=q.sum_rate("mystocks_db_slow_queries_total", "job"), why="Slow statements per second."),
        Record(record="job_table:mystocks_db_slow_queries:rate5m",
               expr=q.sum_rate("mystocks_db_slow_queries_total", "job, operation, table"),
               why="Slow statements by operation and table (panel Slow Queries)."),
        Record(record="job:mystocks_db_slow_queries:ratio_rate5m",
               expr=ratio("job:mystocks_db_slow_queries:rate5m", "job:mystocks_db_queries:rate5m"),
               why="Share of statements slower than MYSTOCKS_OTEL_SLOW_QUERY_SECONDS."),
        Record(record="job:mystocks_db_query_errors:ratio_rate5m",
               expr=ratio(q.sum_rate("mystocks_db_query_errors_total", "job"), "job:mystocks_db_queries:rate5m"),
               why="Share of statements that raised."),
        Record(record="job:mystocks_db_query_duration_seconds:p99_5m",
               expr=q.quantile(0.99, "mystocks_db_query_duration_seconds", "job"),
               why="Query latency p99: the tail that meets the statement timeout first."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q = PromQL(cfg.app_job)
    _POOL = "job_instance_pool:mystocks_db_connections:usage_ratio"
    return (
        Alert(
            name="DatabaseHighConnectionUsage", expr=f"{_POOL} > {num(c.DB_POOL_USAGE_WARNING)}", for_="10m",
            severity="warning", category="database", priority="P2", team="performance",
            link_labels=("job", "instance"),
            summary="Database pool {{ $labels.pool }} on {{ $labels.instance }} is over " + pct(c.DB_POOL_USAGE_WARNING) + " used.",
            description="{{ $value | humanizePercentage }} of the connections pool {{ $labels.pool }} may open are "
            f"checked out (threshold {pct(c.DB_POOL_USAGE_WARNING)}).",
            threshold="active/max > 80% for 10m",
            why="Above 80% a burst (the market open) checks out the rest and requests queue for up to "
            "pool_timeout (30 s in SQLAlchemy). 10 minutes ignores the short bursts every day has.",
            checks=_POOL_CHECKS,
        ),
        Alert(
            name="DatabaseConnectionPoolExhausted", expr=f"{_POOL} >= {num(c.DB_POOL_USAGE_EXHAUSTED)}", for_="2m",
            severity="critical", category="database", priority="P0", team="platform",
            link_labels=("job", "instance"),
            summary="Database pool {{ $labels.pool }} on {{ $labels.instance }} is exhausted.",
            description="Every connection pool {{ $labels.pool }} may open is checked out; new requests wait for "
            "pool_timeout and then fail.",
            threshold="active/max ≥ 100% for 2m",
            why="A full pool for 2 minutes means requests are already waiting out pool_timeout and failing "
            "with 500s: an outage in progress, so it pages. Per instance: a pool belongs to one "
            "process, and summing two instances would read 15/15 and 0/15 as a healthy 50%.",
            checks=_POOL_CHECKS,
        ),
        Alert(
            name="DatabaseSlowQueries",
            expr=f"{q.sel('job:mystocks_db_slow_queries:ratio_rate5m')} > {num(c.DB_SLOW_QUERY_RATIO_WARNING)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(c.MIN_REQUEST_RATE)}",
            for_="10m", severity="warning", category="database", priority="P2", team="performance",
            summary="More than 5% of SQL statements are slow.",
            description="{{ $value | humanizePercentage }} of statements in {{ $labels.job }} were slower than "
            f"MYSTOCKS_OTEL_SLOW_QUERY_SECONDS over the last 5 minutes (threshold {pct(c.DB_SLOW_QUERY_RATIO_WARNING)}).",
            threshold="slow share > 5% for 10m (with ≥ 0.1 q/s)",
            why="A few slow statements (reports, end-of-day jobs) are normal; 5% of all statements for 10 "
            "minutes is a missing index, a lock or a bloated table. The query-rate floor keeps a lone "
            "night-time batch query from alerting.",
            checks=("Which tables: `job_table:mystocks_db_slow_queries:rate5m` (panel Slow Queries).",
             "`pg_stat_statements` / `EXPLAIN ANALYZE` of the top statements; look for locks in `pg_locks`.",
             "Recent schema or data-volume changes (a new table scan after a migration)."),
        ),
        Alert(
            name="DatabaseQueryTimeoutRisk",
            expr=f"{q.sel('job:mystocks_db_query_duration_seconds:p99_5m')} > {num(c.DB_STATEMENT_TIMEOUT_SECONDS / 2)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(c.MIN_REQUEST_RATE)}",
            for_="5m", severity="warning", category="database", priority="P1", team="performance",
            summary="SQL p99 latency is at half the statement timeout.",
            description="p99 query latency of {{ $labels.job }} is {{ $value | humanizeDuration }} (threshold 5s, "
            "statement timeout 10s).",
            threshold="query p99 > 5 s for 5m (with ≥ 0.1 q/s)",
            why="At half the 10 s statement timeout the slowest 1% is one slowdown away from timing out "
            "(and timeouts become 5xx). 5 s is a bucket bound, so the estimate is exact there. "
            "The query-rate floor keeps one slow night-time report from alerting.",
            checks=("Long-running statements: `SELECT pid, now() - query_start, query FROM pg_stat_activity ORDER BY 2 DESC`.",
             "Lock waits (`pg_locks` with `granted = false`) and autovacuum on big tables.",
             "Database host I/O and CPU."),
        ),
        Alert(
            name="DatabaseQueryErrors",
            expr=f"{q.sel('job:mystocks_db_query_errors:ratio_rate5m')} > {num(c.API_ERROR_RATIO_WARNING)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(c.MIN_REQUEST_RATE)}",
            for_="5m", severity="warning", category="database", priority="P1", team="platform",
            summary="More than 1% of SQL statements fail.",
            description="{{ $value | humanizePercentage }} of statements in {{ $labels.job }} raised over the last "
            f"5 minutes (threshold {pct(c.API_ERROR_RATIO_WARNING)}).",
            threshold="error share > 1% for 5m (with ≥ 0.1 q/s)",
            why="Same bar as the API's 5xx ratio: a failed statement nearly always becomes a failed request. "
            "IntegrityErrors from user input stay well below 1%.",
            checks=("Which error types: `sum by (error_type) (rate(mystocks_db_query_errors_total[5m]))`.",
             "OperationalError/InterfaceError mean connectivity: check PostgreSQLDown and the network.",
             "ProgrammingError after a deploy means a migration was not applied."),
        ),
    )
