"""Market data: the trading session, processing throughput and latency, feed errors."""

from __future__ import annotations

from mystocks_otel.mixin import config as c
from mystocks_otel.mixin.config import MixinConfig
from mystocks_otel.mixin.lib.promql import PromQL, num, ratio
from mystocks_otel.mixin.lib.rulekit import Alert, Group, Record

OPEN = "and on () mystocks:trading_session:open"
REALTIME = "|".join(c.REALTIME_DATASETS)
MIN_FROM, MIN_TO = c.TRADING_SESSION_UTC_MINUTES


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    freshness = cfg.slo("market-data-freshness")
    fresh_sel = q.sel("mystocks_data_quality_freshness_seconds", f'dataset=~"{REALTIME}"')
    return Group("mystocks-market-data.rules", (
        Record(record="mystocks:trading_session:open",
               expr=f"vector(1)\n  and on () (day_of_week() >= 1 and day_of_week() <= 5)\n"
               f"  and on () (hour() * 60 + minute() >= {MIN_FROM} and hour() * 60 + minute() < {MIN_TO})",
               why="1 while the A-share market is open (Mon-Fri 09:30-15:00 CST = 01:30-07:00 UTC), "
               "absent otherwise. Business and freshness rules are gated on it: at night no data "
               "flows and nobody trades, which is not an incident. Exchange holidays are not known "
               "here: silence the market-data alerts on them (docs/runbooks.md)."),
        Record(record="job_source:mystocks_market_data_points_processed:rate5m",
               expr=q.sum_rate("mystocks_market_data_points_processed_total", "job, source"),
               why="Points processed per second by source (panel Market Data Points)."),
        *(Record(record=f"job_source:mystocks_market_data_processing_duration_seconds:p{int(p * 100)}_5m",
                 expr=q.quantile(p, "mystocks_market_data_processing_duration_seconds", "job, source"),
                 why=f"Processing latency p{int(p * 100)} by source (panel Market Data Latency).")
          for p in (0.95, 0.99)),
        Record(record="job_source:mystocks_market_data_feed_errors:rate5m",
               expr=q.sum_rate("mystocks_market_data_feed_errors_total", "job, source"),
               why="Feed errors per second by source."),
        Record(record="job_dataset:mystocks_data_quality_anomalies:rate10m",
               expr=q.sum_rate("mystocks_data_quality_anomalies_total", "job, dataset", "10m"),
               why="Anomalies per second now, by dataset."),
        Record(record="job_dataset:mystocks_data_quality_anomalies:rate1d",
               expr=q.sum_rate("mystocks_data_quality_anomalies_total", "job, dataset", "1d"),
               why="Anomalies per second over a day: the baseline a spike is compared with."),
        Record(record="job_dataset:mystocks_data_quality_freshness_seconds:max",
               expr=q.agg("max", "job, dataset", "mystocks_data_quality_freshness_seconds"),
               why="Age of the newest record by dataset, worst instance."),
        Record(record="job:mystocks_data_quality_realtime_fresh:bool",
               expr=f"(max by (job) ({fresh_sel})"
               f" < bool {num(freshness.threshold_seconds)})\n  and on () mystocks:trading_session:open",
               why="1 when every real-time feed is fresher than the freshness SLO's threshold, 0 when "
               "one is not; recorded only while the market is open. The freshness SLI is its mean."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q = PromQL(cfg.app_job)
    return (
        Alert(
            name="MarketDataSlowProcessing",
            expr=f"{q.sel('job_source:mystocks_market_data_processing_duration_seconds:p95_5m')}"
            f" > {num(c.MARKET_DATA_P95_WARNING_SECONDS)}",
            for_="10m", severity="warning", category="market_data", priority="P1", team="data",
            summary="Market data from {{ $labels.source }} is processed slowly.",
            description="p95 processing time of {{ $labels.source }} data is {{ $value | humanizeDuration }} "
            "(threshold 1s).",
            threshold="processing p95 > 1 s for 10m",
            why="A-share snapshots arrive every 3 s; a batch that takes over 1 s uses a third of the "
            "interval, and the bursts at the open then queue up and quotes go stale. 10 minutes "
            "ignores one slow provider response.",
            checks=("Which data types are slow: `mystocks_market_data_processing_duration_seconds_bucket` by data_type.",
             "Database write latency (DatabaseQueryTimeoutRisk) and the cache (writes go through it).",
             "Batch size from the provider (`rate(mystocks_market_data_points_processed_total[5m])`)."),
        ),
        Alert(
            name="MarketDataProcessingBlocked",
            expr=f"(sum by (job, source) ({q.sel('mystocks_market_data_symbols_tracked')}) > 0)\n"
            f"unless on (job, source) (job_source:mystocks_market_data_points_processed:rate5m > 0)\n{OPEN}",
            for_="5m", severity="critical", category="market_data", priority="P0", team="data",
            summary="No market data processed from {{ $labels.source }}.",
            description="{{ $value | humanize }} symbols from {{ $labels.source }} have a live feed but no point "
            "was processed in 5 minutes while the market is open.",
            threshold="0 points/s from a source with tracked symbols, market open, for 5m",
            why="Quotes tick every few seconds during the session, so 5+5 minutes without a single point "
            "from a source that still tracks symbols is a stuck consumer, not a quiet market. Gated "
            "on the trading session: at night no points is normal.",
            checks=("Feed errors for the source (MarketDataFeedErrors) and DependencyUnavailable{dependency=\"market_data_feed\"}.",
             "The ingestion worker: alive, and not blocked on a lock or a full queue (thread dump / py-spy).",
             "Whether today is an exchange holiday: then silence the market-data alerts for the day."),
        ),
        Alert(
            name="MarketDataFeedErrors",
            expr=f"{q.sel('job_source:mystocks_market_data_feed_errors:rate5m')} * 60 > 5",
            for_="10m", severity="warning", category="market_data", priority="P2", team="data",
            summary="Market data source {{ $labels.source }} keeps failing.",
            description="{{ $labels.source }} produced {{ $value | humanize }} feed errors per minute over the "
            "last 5 minutes (threshold 5/min).",
            threshold="> 5 feed errors/min for 10m",
            why="Free providers (akshare, efinance) time out or rate-limit a few times a minute and the "
            "client retries; more than 5 a minute for 10 minutes means the source is degraded and "
            "the fallback source should take over.",
            checks=("Which reason: `sum by (reason) (rate(mystocks_market_data_feed_errors_total[5m]))`.",
             "`rate_limited`: lower the polling rate or switch the source; `parse`: the provider changed its format.",
             "The provider's status page and our egress (DNS, proxy)."),
        ),
    )
