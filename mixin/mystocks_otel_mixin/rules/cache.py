"""Cache: hit ratio with a lookup floor, evictions of the working set, Redis command errors."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-cache.rules", (
        Record(record="job_cache:mystocks_cache_hits:rate5m", expr=q.sum_rate("mystocks_cache_hits_total", "job, cache"),
               why="Cache hits per second (panel Cache Hits vs Misses)."),
        Record(record="job_cache:mystocks_cache_misses:rate5m",
               expr=q.sum_rate("mystocks_cache_misses_total", "job, cache"), why="Cache misses per second."),
        Record(record="job_cache:mystocks_cache_lookups:rate5m",
               expr="(job_cache:mystocks_cache_hits:rate5m or job_cache:mystocks_cache_misses:rate5m * 0)\n+\n"
               "(job_cache:mystocks_cache_misses:rate5m or job_cache:mystocks_cache_hits:rate5m * 0)",
               why="Lookups per second; correct even while hits or misses have no series yet."),
        Record(record="job_cache:mystocks_cache_hit:ratio_rate5m",
               expr="(job_cache:mystocks_cache_hits:rate5m or job_cache:mystocks_cache_misses:rate5m * 0)\n/\n"
               "(job_cache:mystocks_cache_lookups:rate5m > 0)",
               why="Hit ratio over the last 5 min (the gauge mystocks_cache_hit_ratio is since start, "
               "which hides a sudden drop)."),
        Record(record="job_cache:mystocks_cache_evictions:rate5m",
               expr=f"max by (job, cache) ({q.rate('mystocks_cache_evictions_total')})",
               why="Evictions per second, once per cache: every instance reports the shared Redis' "
               "own counter, so the max over instances (not the sum) is the truth."),
        Record(record="job:mystocks_redis_commands:rate5m",
               expr=q.sum_rate("mystocks_redis_command_duration_seconds_count", "job"),
               why="Redis commands per second."),
        Record(record="job:mystocks_redis_command_errors:ratio_rate5m",
               expr=ratio(q.sum_rate("mystocks_redis_command_errors_total", "job"), "job:mystocks_redis_commands:rate5m"),
               why="Share of Redis commands that raised."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    floor = f"≥ {num(t.min_request_rate)} lookups/s"
    _HIT = q.sel("job_cache:mystocks_cache_hit:ratio_rate5m")
    _HIT_FLOOR = f"and on (job, cache) job_cache:mystocks_cache_lookups:rate5m > {num(t.min_request_rate)}"
    return (
        Alert(
            name="CacheLowHitRate", expr=f"{_HIT} < {num(t.cache_hit_ratio_warning)}\n{_HIT_FLOOR}", for_="15m",
            severity="warning", category="cache", priority="P2", team="performance",
            summary="Cache {{ $labels.cache }} hit ratio is below " + pct(t.cache_hit_ratio_warning) + ".",
            description="The {{ $labels.cache }} cache answered {{ $value | humanizePercentage }} of lookups over "
            f"the last 5 minutes (threshold {pct(t.cache_hit_ratio_warning)}).",
            threshold=f"hit ratio < {pct(t.cache_hit_ratio_warning)} for 15m (with {floor})",
            why="Quote lookups hit over 90% when TTLs are right (many readers per symbol). Below "
            f"{pct(t.cache_hit_ratio_warning)} the "
            "database and the rate-limited providers take twice the load. 15 minutes lets the cache "
            "warm up after a restart or at the market open.",
            checks=("Evictions (`mystocks_cache_evictions_total`) and memory: a full cache evicts what it needs.",
             "TTLs and key patterns changed in the last deploy (a key that embeds a timestamp never hits).",
             "RedisDown / RedisCommandErrors: errors count as misses."),
        ),
        Alert(
            name="CacheCriticalHitRate", expr=f"{_HIT} < {num(t.cache_hit_ratio_critical)}\n{_HIT_FLOOR}", for_="10m",
            severity="critical", category="cache", priority="P1", team="performance",
            summary="Cache {{ $labels.cache }} hit ratio is below " + pct(t.cache_hit_ratio_critical) + ".",
            description="The {{ $labels.cache }} cache answered only {{ $value | humanizePercentage }} of lookups "
            f"over the last 5 minutes (threshold {pct(t.cache_hit_ratio_critical)}).",
            threshold=f"hit ratio < {pct(t.cache_hit_ratio_critical)} for 10m (with {floor})",
            why=f"Below {pct(t.cache_hit_ratio_critical)} more lookups miss than hit: the cache no longer shields PostgreSQL and the "
            "market-data providers (akshare and tushare throttle), and API latency follows within minutes.",
            checks=("Is Redis reachable (RedisDown, RedisCommandErrors)?",
             "Was the cache flushed or restarted (`mystocks_cache_keys` dropped)?",
             "Evictions and memory: raise maxmemory or shorten the TTL of large values."),
        ),
        Alert(
            name="CacheEvictingWorkingSet",
            expr=f"{q.sel('job_cache:mystocks_cache_evictions:rate5m')} > {num(t.cache_evictions_per_second_warning)}\n"
            f"and on (job, cache) {_HIT} < {num(t.cache_hit_ratio_warning)}\n{_HIT_FLOOR}",
            for_="15m", severity="warning", category="cache", priority="P2", team="performance",
            link_labels=("job",),
            summary="Cache {{ $labels.cache }} evicts keys it still needs.",
            description="The {{ $labels.cache }} cache evicts {{ $value | humanize }} keys/s while its hit "
            f"ratio is below {pct(t.cache_hit_ratio_warning)}: it is too small for its working set.",
            threshold=f"evictions > {num(t.cache_evictions_per_second_warning)}/s and hit ratio < "
            f"{pct(t.cache_hit_ratio_warning)} for 15m (with {floor})",
            why="An LRU cache (compose runs Redis with maxmemory 128mb and allkeys-lru) is meant to sit "
            "full, so memory used against maxmemory says nothing: it is always near 100%. What hurts "
            "is evicting keys that are read again, which shows as evictions together with a falling "
            "hit ratio. Evictions are Redis' own counter, which every API instance reads: the "
            "recorded series takes the max over instances, so one Redis fires once, not once per "
            "instance.",
            checks=("`redis-cli INFO memory` (used_memory vs maxmemory) and `INFO stats` (evicted_keys).",
             "Keys without a TTL or large values (`redis-cli --bigkeys`) crowding out the hot set.",
             "Raise maxmemory, or shorten the TTL of rarely read values."),
        ),
        Alert(
            name="RedisCommandErrors",
            expr=f"{q.sel('job:mystocks_redis_command_errors:ratio_rate5m')} > {num(t.redis_error_ratio_warning)}\n"
            f"and on (job) job:mystocks_redis_commands:rate5m > {num(t.min_request_rate)}",
            for_="5m", severity="warning", category="cache", priority="P2", team="platform",
            summary=f"More than {pct(t.redis_error_ratio_warning)} of Redis commands fail.",
            description="{{ $value | humanizePercentage }} of Redis commands from {{ $labels.job }} raised over the "
            f"last 5 minutes (threshold {pct(t.redis_error_ratio_warning)}).",
            threshold=f"error share > {pct(t.redis_error_ratio_warning)} for 5m (with ≥ {num(t.min_request_rate)} cmd/s)",
            why=f"Redis commands should essentially never fail; {pct(t.redis_error_ratio_warning)} sustained means timeouts, a failover "
            "or memory refusals (OOM with noeviction) rather than a blip.",
            checks=("Which error types: `sum by (error_type) (rate(mystocks_redis_command_errors_total[5m]))`.",
             "ReadOnlyError means a failover left the app on a replica; TimeoutError means load or network.",
             "Redis memory (CacheEvictingWorkingSet) and `redis-cli INFO stats`."),
        ),
    )
