"""Database: pool usage, slow statements, statement errors and the timeout-risk tail.

Following one metric, ``mystocks.db.slow_queries`` (``mystocks_otel/catalog.py``):

- its thresholds: ``MixinConfig.thresholds.db_slow_query_ratio_warning`` and
  ``min_request_rate`` (``mixin/mystocks_otel_mixin/config.py``; ``mystocks-otel render --set``);
- its recording rules and the ``DatabaseSlowQueries`` alert: below, in this file;
- its promtool scenarios: ``alerts/tests/database.yml``;
- its runbook: ``docs/runbooks.md#databaseslowqueries`` (generated from this file's ``checks``);
- its panel: "Slow Queries" in ``dashboards/main.py``.
"""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, dur, histogram, metric, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

#: The catalog metrics this module reads, by their OTel names (``mystocks_otel/catalog.py``).
ACTIVE, MAX = metric("mystocks.db.connections_active"), metric("mystocks.db.connections_max")
QUERIES = metric("mystocks.db.query_duration", "_count")
DURATION = histogram("mystocks.db.query_duration")
SLOW = metric("mystocks.db.slow_queries")
ERRORS = metric("mystocks.db.query_errors")

_POOL_CHECKS = (
    "Which pool: the `pool` label; then `pg_stat_activity` for long-running or idle-in-transaction sessions.",
    "Slow queries (DatabaseSlowQueries): slow statements hold connections longer.",
    "Traffic: a request spike needs a larger pool (pool_size/max_overflow) or more replicas.",
)


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-database.rules", (
        Record(record="job_pool:mystocks_db_connections:usage_ratio",
               expr=f"{q.agg('sum', 'job, pool', ACTIVE)}\n/\n({q.agg('sum', 'job, pool', MAX)} > 0)",
               why="Checked-out share of each pool's maximum over all instances (panel and capacity "
               "trend). Not what the alerts read: one exhausted instance hides behind an idle one."),
        Record(record="job_instance_pool:mystocks_db_connections:usage_ratio",
               expr=f"max by (job, instance, pool) (\n  {q.sel(ACTIVE)}\n  /\n  ({q.sel(MAX)} > 0)\n)",
               why="Checked-out share of the fullest pool on each instance. A pool belongs to one "
               "process: a full pool on api-1 makes api-1's requests wait whatever api-2's pool "
               "holds, and under several workers each worker has its own pool (the library labels "
               "the pool gauges with the worker's slot). So the ratio is taken per worker, "
               "matching active and max one to one, and the fullest worker speaks for the "
               "instance: worker 0 at 15/15 beside three at 1/15 reads 100%, not the 30% a sum "
               "over workers makes of it. Without workers (one process) the same expression is the "
               "process's own ratio."),
        Record(record="job:mystocks_db_queries:rate5m",
               expr=q.sum_rate(QUERIES, "job"),
               why="Statement rate: the denominator of the slow-query and error ratios."),
        Record(record="job:mystocks_db_slow_queries:rate5m",
               expr=q.sum_rate(SLOW, "job"), why="Slow statements per second."),
        Record(record="job_table:mystocks_db_slow_queries:rate5m",
               expr=q.sum_rate(SLOW, "job, operation, table"),
               why="Slow statements by operation and table (panel Slow Queries)."),
        Record(record="job:mystocks_db_slow_queries:ratio_rate5m",
               expr=ratio("job:mystocks_db_slow_queries:rate5m", "job:mystocks_db_queries:rate5m"),
               why="Share of statements slower than MYSTOCKS_OTEL_SLOW_QUERY_SECONDS."),
        Record(record="job:mystocks_db_query_errors:ratio_rate5m",
               expr=ratio(q.sum_rate(ERRORS, "job"), "job:mystocks_db_queries:rate5m"),
               why="Share of statements that raised."),
        Record(record="job:mystocks_db_query_duration_seconds:p99_5m",
               expr=q.quantile(0.99, DURATION, "job"),
               why="Query latency p99: the tail that meets the statement timeout first."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    floor = f"≥ {num(t.min_request_rate)} q/s"
    timeout = t.db_statement_timeout_seconds
    _POOL = "job_instance_pool:mystocks_db_connections:usage_ratio"
    return (
        Alert(
            name="DatabaseHighConnectionUsage", expr=f"{_POOL} > {num(t.db_pool_usage_warning)}", for_="10m",
            severity="warning", category="database", priority="P2", team="performance",
            link_labels=("job", "instance"),
            summary="Database pool {{ $labels.pool }} on {{ $labels.instance }} is over " + pct(t.db_pool_usage_warning) + " used.",
            description="{{ $value | humanizePercentage }} of the connections pool {{ $labels.pool }} may open are "
            f"checked out (threshold {pct(t.db_pool_usage_warning)}).",
            threshold=f"active/max > {pct(t.db_pool_usage_warning)} for 10m",
            why=f"Above {pct(t.db_pool_usage_warning)} a burst (the market open) checks out the rest and requests queue for up to "
            "pool_timeout (30 s in SQLAlchemy). 10 minutes ignores the short bursts every day has.",
            checks=_POOL_CHECKS,
        ),
        Alert(
            name="DatabaseConnectionPoolExhausted", expr=f"{_POOL} >= {num(t.db_pool_usage_exhausted)}", for_="2m",
            severity="critical", category="database", priority="P0", team="platform",
            link_labels=("job", "instance"),
            summary="Database pool {{ $labels.pool }} on {{ $labels.instance }} is exhausted.",
            description=("Every connection pool {{ $labels.pool }} may open is checked out" if t.db_pool_usage_exhausted >= 1
                         else "{{ $value | humanizePercentage }} of the connections pool {{ $labels.pool }} may open are "
                         f"checked out (threshold {pct(t.db_pool_usage_exhausted)})")
            + "; new requests wait for pool_timeout and then fail.",
            threshold=f"active/max ≥ {pct(t.db_pool_usage_exhausted)} for 2m",
            why="A full pool for 2 minutes means requests are already waiting out pool_timeout and failing "
            "with 500s: an outage in progress, so it pages. Per process: a pool belongs to one "
            "process, and summing two instances, or the workers of one, would read 15/15 and 0/15 "
            "as a healthy 50%; the recorded ratio is the fullest worker's on each instance, so the "
            "worker whose requests fail is the one judged.",
            checks=_POOL_CHECKS,
        ),
        Alert(
            name="DatabaseSlowQueries",
            expr=f"{q.sel('job:mystocks_db_slow_queries:ratio_rate5m')} > {num(t.db_slow_query_ratio_warning)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(t.min_request_rate)}",
            for_="10m", severity="warning", category="database", priority="P2", team="performance",
            summary=f"More than {pct(t.db_slow_query_ratio_warning)} of SQL statements are slow.",
            description="{{ $value | humanizePercentage }} of statements in {{ $labels.job }} were slower than "
            f"MYSTOCKS_OTEL_SLOW_QUERY_SECONDS over the last 5 minutes (threshold {pct(t.db_slow_query_ratio_warning)}).",
            threshold=f"slow share > {pct(t.db_slow_query_ratio_warning)} for 10m (with {floor})",
            why="A few slow statements (reports, end-of-day jobs) are normal; "
            f"{pct(t.db_slow_query_ratio_warning)} of all statements for 10 "
            "minutes is a missing index, a lock or a bloated table. The query-rate floor keeps a lone "
            "night-time batch query from alerting.",
            checks=("Which tables: `job_table:mystocks_db_slow_queries:rate5m` (panel Slow Queries).",
             "`pg_stat_statements` / `EXPLAIN ANALYZE` of the top statements; look for locks in `pg_locks`.",
             "Recent schema or data-volume changes (a new table scan after a migration)."),
        ),
        Alert(
            name="DatabaseQueryTimeoutRisk",
            expr=f"{q.sel('job:mystocks_db_query_duration_seconds:p99_5m')} > {num(t.db_statement_timeout_seconds / 2)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(t.min_request_rate)}",
            for_="5m", severity="warning", category="database", priority="P1", team="performance",
            summary="SQL p99 latency is at half the statement timeout.",
            description="p99 query latency of {{ $labels.job }} is {{ $value | humanizeDuration }} "
            f"(threshold {dur(timeout / 2)}, statement timeout {dur(timeout)}).",
            threshold=f"query p99 > {num(timeout / 2)} s for 5m (with {floor})",
            why=f"At half the {num(timeout)} s statement timeout the slowest 1% is one slowdown away from timing out "
            f"(and timeouts become 5xx). {num(timeout / 2)} s is a bucket bound, so the estimate is exact there. "
            "The query-rate floor keeps one slow night-time report from alerting.",
            checks=("Long-running statements: `SELECT pid, now() - query_start, query FROM pg_stat_activity ORDER BY 2 DESC`.",
             "Lock waits (`pg_locks` with `granted = false`) and autovacuum on big tables.",
             "Database host I/O and CPU."),
        ),
        Alert(
            name="DatabaseQueryErrors",
            expr=f"{q.sel('job:mystocks_db_query_errors:ratio_rate5m')} > {num(t.db_error_ratio_warning)}\n"
            f"and on (job) job:mystocks_db_queries:rate5m > {num(t.min_request_rate)}",
            for_="5m", severity="warning", category="database", priority="P1", team="platform",
            summary=f"More than {pct(t.db_error_ratio_warning)} of SQL statements fail.",
            description="{{ $value | humanizePercentage }} of statements in {{ $labels.job }} raised over the last "
            f"5 minutes (threshold {pct(t.db_error_ratio_warning)}).",
            threshold=f"error share > {pct(t.db_error_ratio_warning)} for 5m (with {floor})",
            why="Same bar as the API's 5xx ratio: a failed statement nearly always becomes a failed request. "
            f"IntegrityErrors from user input stay well below {pct(t.db_error_ratio_warning)}.",
            checks=("Which error types: `sum by (error_type) (rate(mystocks_db_query_errors_total[5m]))`.",
             "OperationalError/InterfaceError mean connectivity: check PostgreSQLDown and the network.",
             "ProgrammingError after a deploy means a migration was not applied."),
        ),
    )
