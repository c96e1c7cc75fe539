"""Market data: the trading session, processing throughput and latency, feed errors."""

from __future__ import annotations

from datetime import date

from mystocks_otel_mixin.config import MixinConfig, Sessions
from mystocks_otel_mixin.lib.promql import PromQL, dur, num
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

OPEN = "and on () mystocks:trading_session:open"
OPENED_AT = "mystocks:trading_session:opened_at_seconds"
_SILENCE = "amtool silence add gate=trading_session"


def settled(seconds: float) -> str:
    """The session gate of an age, a freshness or a windowed rule: open, and open for more than
    ``seconds`` (``and on () (time() - opened_at > N)``). At the open a source's age still
    counts the closed hours (18.5 h in the morning, 90 min after lunch) until its first new
    point is scraped: an age over N that started before the open is not a stall. A source that
    delivers nothing after the open is N seconds stale N seconds after it, and pages then,
    exactly as a stall mid-session does."""
    return f"and on () (time() - {OPENED_AT} > {num(seconds)})"


def opened_at_expr(sessions: Sessions) -> str:
    """The Unix time the current session opened (present only while ``mystocks:trading_session:open`` is)."""
    now = "hour() * 60 + minute()"
    day = "time() - time() % 86400"
    branches = "\n  or\n  ".join(f"(vector({day} + {start * 60}) and on () ({now} >= {start} and {now} < {end}))"
                                for start, end in sessions.utc_minutes)
    return f"(\n  {branches}\n)\nand on () mystocks:trading_session:open"


def session_expr(sessions: Sessions) -> str:
    """1 on trading days inside a session (``sessions.utc_minutes``), absent otherwise and on
    ``sessions.holidays``."""
    days = f"day_of_week() >= {min(sessions.days)} and day_of_week() <= {max(sessions.days)}"
    now = "hour() * 60 + minute()"
    windows = "\n    or\n".join(f"({now} >= {start} and {now} < {end})"
                                for start, end in sessions.utc_minutes)
    expr = f"vector(1)\n  and on () ({days})\n  and on () (\n    {windows}\n  )"
    if sessions.holidays:
        closed = "\n    or\n".join(
            f"(year() == {d.year} and month() == {d.month} and day_of_month() == {d.day})"
            for d in sorted(date.fromisoformat(h) for h in sessions.holidays))
        expr += f"\n  unless on () (\n    {closed}\n  )"
    return expr


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    freshness = cfg.slo("market-data-freshness")
    realtime = "|".join(cfg.sessions.realtime_datasets)
    fresh_sel = q.sel("mystocks_data_quality_freshness_seconds", f'dataset=~"{realtime}"')
    return Group("mystocks-market-data.rules", (
        Record(record="mystocks:trading_session:open", expr=session_expr(cfg.sessions),
               why="1 while the A-share market is open (Mon-Fri 09:30-11:30 and 13:00-15:00 CST = "
               f"{cfg.sessions.text()}, from cfg.sessions.utc_minutes), absent otherwise: "
               "at night, at the weekend and over the lunch break no data flows and nobody trades, "
               "which is not an incident. Market-data, business and freshness rules (the SLO "
               "included) are gated on it. Exchange holidays rendered in (`mystocks-otel render "
               "--holiday YYYY-MM-DD`) keep it closed all day; for any other closure every gated "
               f"alert carries gate=trading_session, and `{_SILENCE}` silences them all."),
        Record(record=OPENED_AT, expr=opened_at_expr(cfg.sessions),
               why="When the current session opened (Unix seconds), present while the market is "
               "open: `time() - mystocks:trading_session:opened_at_seconds` is how long it has been "
               "open. Age, freshness and windowed rules judge a session-bound source only once the "
               "session is older than their threshold or window, so the closed hours before the open "
               "never count as a stall (rules.market_data.settled)."),
        Record(record="job_source:mystocks_market_data_points_processed:rate5m",
               expr=q.sum_rate("mystocks_market_data_points_processed_total", "job, source"),
               why="Points processed per second by source (panel Market Data Points)."),
        *(Record(record=f"job_source:mystocks_market_data_processing_duration_seconds:p{int(p * 100)}_5m",
                 expr=q.quantile(p, "mystocks_market_data_processing_duration_seconds", "job, source"),
                 why=f"Processing latency p{int(p * 100)} by source (panel Market Data Latency).")
          for p in (0.95, 0.99)),
        Record(record="job_source:mystocks_market_data_batches:rate5m",
               expr=q.sum_rate("mystocks_market_data_processing_duration_seconds_count", "job, source"),
               why="Batches processed per second by source: the traffic floor of the latency alert."),
        Record(record="job_source:mystocks_market_data_last_update:age_seconds",
               expr=f"time() - max by (job, source) ({q.sel('mystocks_market_data_last_update_timestamp_seconds')})",
               why="Seconds since any instance last processed a point from the source. Unlike a "
               "freshness gauge, it keeps growing when the producer dies and stops setting it."),
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
    q, t = PromQL(cfg.app_job), cfg.thresholds
    stale = t.stale_data_seconds
    return (
        Alert(
            name="MarketDataSlowProcessing",
            expr=f"{q.sel('job_source:mystocks_market_data_processing_duration_seconds:p95_5m')}"
            f" > {num(t.market_data_p95_warning_seconds)}\n"
            f"and on (job, source) job_source:mystocks_market_data_batches:rate5m > {num(t.min_request_rate)}",
            for_="10m", severity="warning", category="market_data", priority="P1", team="data",
            summary="Market data from {{ $labels.source }} is processed slowly.",
            description="p95 processing time of {{ $labels.source }} data is {{ $value | humanizeDuration }} "
            f"(threshold {dur(t.market_data_p95_warning_seconds)}).",
            threshold=f"processing p95 > {num(t.market_data_p95_warning_seconds)} s for 10m (with ≥ {num(t.min_request_rate)} batches/s)",
            why="A-share snapshots arrive every 3 s; a batch that takes over "
            f"{num(t.market_data_p95_warning_seconds)} s uses {num(t.market_data_p95_warning_seconds)} s of that "
            "interval, and the bursts at the open then queue up and quotes go stale. 10 minutes "
            "ignores one slow provider response. The batch-rate floor keeps one slow batch of a "
            "quiet source (a p95 over two samples is its maximum) from alerting.",
            checks=("Which data types are slow: `mystocks_market_data_processing_duration_seconds_bucket` by data_type.",
             "Database write latency (DatabaseQueryTimeoutRisk) and the cache (writes go through it).",
             "Batch size from the provider (`rate(mystocks_market_data_points_processed_total[5m])`)."),
        ),
        Alert(
            name="MarketDataProcessingBlocked",
            expr=f"(sum by (job, source) ({q.sel('mystocks_market_data_symbols_tracked')}) > 0)\n"
            f"unless on (job, source) (job_source:mystocks_market_data_points_processed:rate5m > 0)\n{settled(300)}",
            for_="5m", severity="critical", category="market_data", priority="P0", team="data",
            session_gated=True, link_labels=("job", "source"),
            summary="No market data processed from {{ $labels.source }}.",
            description="{{ $value | humanize }} symbols from {{ $labels.source }} have a live feed but no point "
            "was processed in 5 minutes while the market is open.",
            threshold="0 points/s from a source with tracked symbols, market open, for 5m",
            why="Quotes tick every few seconds during the session, so 5+5 minutes without a single point "
            "from a source that still tracks symbols is a stuck consumer, not a quiet market. Gated "
            "on the trading session: at night and over the lunch break no points is normal. Judged "
            "from 5 minutes after each open, when the 5-minute rate no longer reads the closed "
            "minutes before it; a source silent from the open then pages 10 minutes after it, as a "
            "stall mid-session does (MarketDataNotUpdated has paged at 2 minutes by then).",
            checks=("Feed errors for the source (MarketDataFeedErrors) and DependencyUnavailable{dependency=\"market_data_feed\"}.",
             "The ingestion worker: alive, and not blocked on a lock or a full queue (thread dump / py-spy).",
             f"Whether today is an exchange holiday: then `{_SILENCE}` for the day."),
        ),
        Alert(
            name="MarketDataNotUpdated",
            expr=f"time() - max by (job, source) ({q.sel('mystocks_market_data_last_update_timestamp_seconds')})"
            f" > {num(stale)}\n{settled(stale)}",
            for_="0s", severity="critical", category="market_data", priority="P0", team="data",
            session_gated=True, link_labels=("job", "source"),
            summary="Market data from {{ $labels.source }} stopped updating.",
            description="No point from {{ $labels.source }} has been processed for "
            "{{ $value | humanizeDuration }} while the market is open "
            f"(threshold {dur(stale)}).",
            threshold=f"time() - last update > {num(stale)} s, market open for > {num(stale)} s",
            why="The producer can die while the process stays up: its freshness gauge then freezes "
            "at its last value (0, 'fresh') or vanishes, and the ratio alerts see no traffic. "
            "The last-update timestamp is set only when points are processed, so time() minus it "
            f"grows whatever the producer does. {num(stale)} s is {num(stale / 3)} missed 3-second snapshots. "
            "No `for`: the age only grows while the producer is stalled, so it cannot flap, and the "
            f"{num(stale)} s "
            "threshold is already the wait (a `for` would only add to the P0's time to detect). "
            "The session gate keeps the lunch break, nights and weekends quiet, and the age is "
            f"judged only once the session is {num(stale)} s old: at the open the last update is "
            "still the previous session's (18.5 h or 90 min ago) until the first new point is "
            "scraped, which is not a stall. A source that delivers nothing after the open is "
            f"{num(stale)} s stale {num(stale)} s after it and pages then, like a stall mid-session.",
            checks=("The producer task: alive? Its last log lines and `py-spy dump` of the process.",
                    "Feed errors for the source (MarketDataFeedErrors) and the provider's status.",
                    f"An exchange holiday or a trading halt: then `{_SILENCE}` for the day."),
        ),
        Alert(
            name="MarketDataUpdatesAbsent",
            expr=f"count by (job) ({q.sel('up')} == 1)\n"
            f"unless on (job) count by (job) ({q.sel('mystocks_market_data_last_update_timestamp_seconds')})\n{OPEN}",
            for_="10m", severity="critical", category="market_data", priority="P0", team="data",
            session_gated=True,
            summary="No market data producer has reported since the API started.",
            description="{{ $labels.job }} is up but none of its instances has processed a market "
            "data point while the market is open.",
            threshold="API up, no last-update series, market open, for 10m",
            why="MarketDataNotUpdated needs the series; after a restart whose producer never starts "
            "(a failed import, a missing credential) there is none, and only its absence tells. "
            "10 minutes of an open market lets a slow provider log-in finish.",
            checks=("The API's start-up log: did the producer task start, or raise?",
                    "Provider credentials and network from the API host.",
                    f"An exchange holiday: then `{_SILENCE}` for the day."),
        ),
        Alert(
            name="MarketDataFeedErrors",
            expr=f"{q.sel('job_source:mystocks_market_data_feed_errors:rate5m')} * 60 > {num(t.market_data_feed_errors_per_minute)}",
            for_="10m", severity="warning", category="market_data", priority="P2", team="data",
            summary="Market data source {{ $labels.source }} keeps failing.",
            description="{{ $labels.source }} produced {{ $value | humanize }} feed errors per minute over the "
            f"last 5 minutes (threshold {num(t.market_data_feed_errors_per_minute)}/min).",
            threshold=f"> {num(t.market_data_feed_errors_per_minute)} feed errors/min for 10m",
            why="Free providers (akshare, efinance) time out or rate-limit a few times a minute and the "
            f"client retries; more than {num(t.market_data_feed_errors_per_minute)} a minute for 10 minutes means the source is degraded and "
            "the fallback source should take over.",
            checks=("Which reason: `sum by (reason) (rate(mystocks_market_data_feed_errors_total[5m]))`.",
             "`rate_limited`: lower the polling rate or switch the source; `parse`: the provider changed its format.",
             "The provider's status page and our egress (DNS, proxy)."),
        ),
    )
