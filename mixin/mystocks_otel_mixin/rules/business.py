"""Business: sessions, orders and data quality, gated on the trading session where it matters."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, dur, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record
from mystocks_otel_mixin.rules.market_data import settled

OPEN = "and on () mystocks:trading_session:open"


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-business.rules", (
        Record(record="job:mystocks_user_active_sessions:sum",
               expr=q.agg("sum", "job", "mystocks_user_active_sessions"), why="Signed-in sessions."),
        Record(record="job_platform:mystocks_user_active_sessions:sum",
               expr=q.agg("sum", "job, platform", "mystocks_user_active_sessions"),
               why="Sessions by platform (panel User Sessions)."),
        Record(record="job:mystocks_trading_orders:rate5m", expr=q.sum_rate("mystocks_trading_orders_total", "job"),
               why="Orders per second."),
        Record(record="job:mystocks_trading_orders_rejected:ratio_rate5m",
               expr=ratio(q.sum_rate("mystocks_trading_orders_total", "job", extra='status="rejected"'),
                          "job:mystocks_trading_orders:rate5m"),
               why="Share of orders rejected."),
        Record(record="job:mystocks_trading_order_latency_seconds:p95_5m",
               expr=q.quantile(0.95, "mystocks_trading_order_latency_seconds", "job"),
               why="Order acknowledgement latency p95."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    realtime = "|".join(cfg.sessions.realtime_datasets)
    _FRESH = q.sel("mystocks_data_quality_freshness_seconds", f'dataset=~"{realtime}"')
    freshness = cfg.slo("market-data-freshness").threshold_seconds
    return (
        Alert(
            name="NoActiveUsers",
            expr=f"(\n  {q.sel('job:mystocks_user_active_sessions:sum')}\n"
            f"  or on (job) max by (job) ({q.sel('up')} == 1) * 0\n) < 1\n{OPEN}",
            for_="15m", severity="warning", category="business", priority="P2", team="platform",
            session_gated=True,
            summary="No user is signed in while the market is open.",
            description="{{ $labels.job }} has had no active session for 15 minutes during the trading session.",
            threshold="0 sessions (or no sessions series while up) for 15m, market open",
            why="During the session there is always someone watching quotes; none for 15 minutes means "
            "sign-in or the session store is broken while the API looks healthy. Gated on the "
            "session, because nights, weekends and the lunch break are empty. After a restart "
            "nobody has signed in yet and the sessions series does not exist: a scraped API "
            "then counts as 0 sessions, so a broken sign-in after a deploy still alerts.",
            checks=("Try to sign in; look at `mystocks_user_logins_total{result=\"failure\"}`.",
             "The session store (Redis) and the auth provider.",
             "The front end's own errors (a broken release can stop the API from being called)."),
        ),
        Alert(
            name="LowDataCompleteness",
            expr=f"min by (job, dataset) ({q.sel('mystocks_data_quality_completeness_ratio')}) < {num(t.data_completeness_warning)}", for_="15m",
            severity="warning", category="business", priority="P2", team="data",
            summary="Dataset {{ $labels.dataset }} is incomplete.",
            description="Only {{ $value | humanizePercentage }} of the expected {{ $labels.dataset }} records are "
            f"present (threshold {pct(t.data_completeness_warning)}).",
            threshold=f"completeness < {pct(t.data_completeness_warning)} for 15m",
            why=f"Missing {pct(1 - t.data_completeness_warning)} of bars visibly distorts moving averages and other indicators users rely on. "
            "15 minutes lets a late batch arrive.",
            checks=("Which symbols/dates are missing (the data-quality job's report).",
             "Feed errors of the source that fills the dataset (MarketDataFeedErrors).",
             "Backfill from a second source once the gap is known."),
        ),
        Alert(
            name="StaleData",
            expr=f'max by (job, dataset) ({_FRESH})'
            f" > {num(t.stale_data_seconds)}\n{settled(t.stale_data_seconds)}",
            for_="3m", severity="warning", category="business", priority="P1", team="data",
            session_gated=True, link_labels=("job", "dataset"), service="market-data",
            summary="Real-time dataset {{ $labels.dataset }} is stale.",
            description="The newest {{ $labels.dataset }} record is {{ $value | humanizeDuration }} old while the "
            f"market is open (threshold {dur(t.stale_data_seconds)}).",
            threshold=f"real-time data older than {num(t.stale_data_seconds)} s for 3m, market open for > {num(t.stale_data_seconds)} s",
            why=f"{num(t.stale_data_seconds / freshness)}x the freshness SLO's {num(freshness)} s: users see prices minutes old and trade on them. Only the "
            "real-time datasets, and only during the session, once it is "
            f"{num(t.stale_data_seconds)} s old: at the open the gauge still holds the closed "
            "hours' age until the first batch, which is not staleness.",
            checks=("Is the source still delivering (MarketDataProcessingBlocked, MarketDataFeedErrors)?",
             "The ingestion worker's queue and the database writes.",
             "An exchange holiday or a trading halt: then `amtool silence add gate=trading_session`."),
        ),
        Alert(
            name="OrderLatencyHigh",
            expr=f"{q.sel('job:mystocks_trading_order_latency_seconds:p95_5m')} > {num(t.order_latency_p95_warning_seconds)}\n"
            f"and on (job) job:mystocks_trading_orders:rate5m > {num(t.min_request_rate)}", for_="5m",
            severity="warning", category="business", priority="P1", team="performance",
            summary=f"Order acknowledgement p95 is above {num(t.order_latency_p95_warning_seconds * 1000)} ms.",
            description="p95 time from order submission to acknowledgement is {{ $value | humanizeDuration }} "
            f"(threshold {dur(t.order_latency_p95_warning_seconds)}).",
            threshold=f"order p95 > {num(t.order_latency_p95_warning_seconds)} s for 5m (with ≥ {num(t.min_request_rate)} orders/s)",
            why="Broker gateways acknowledge in about 100 ms; at "
            f"{num(t.order_latency_p95_warning_seconds * 1000)} ms the price moves between click and "
            f"acknowledgement, which users feel as slippage. {num(t.order_latency_p95_warning_seconds)} s is a bucket bound. "
            f"The order-rate floor ({num(t.min_request_rate * 300)} orders in 5 minutes) keeps one slow order of a quiet hour, which is the p95 "
            "of a handful, from alerting.",
            checks=("The broker gateway's latency and status.",
             "Database write latency (orders are persisted before acknowledging).",
             "API CPU and event-loop blocking."),
        ),
        Alert(
            name="OrderRejectionRateHigh",
            expr=f"{q.sel('job:mystocks_trading_orders_rejected:ratio_rate5m')} > {num(t.order_rejection_ratio_warning)}\n"
            f"and on (job) job:mystocks_trading_orders:rate5m > {num(t.min_rare_event_rate)}",
            for_="10m", severity="warning", category="business", priority="P1", team="platform",
            summary=f"More than {pct(t.order_rejection_ratio_warning)} of orders are rejected.",
            description="{{ $value | humanizePercentage }} of orders were rejected over the last 5 minutes "
            f"(threshold {pct(t.order_rejection_ratio_warning)}).",
            threshold=f"rejected share > {pct(t.order_rejection_ratio_warning)} for 10m (with ≥ {num(t.min_rare_event_rate)} orders/s)",
            why="Normal rejections (funds, the ±10% price limits) are a few percent; "
            f"{pct(t.order_rejection_ratio_warning)} for 10 minutes "
            "is systematic: a bad reference price or a gateway/auth fault.",
            checks=("Rejection reasons in the order service logs.",
             "The reference prices (StaleData) used to validate limit orders.",
             "The broker gateway's status and credentials."),
        ),
        Alert(
            name="DataAnomalySpike",
            expr=f"{q.sel('job_dataset:mystocks_data_quality_anomalies:rate10m')} * 60 > {num(t.data_anomalies_per_minute)}\n"
            f"and job_dataset:mystocks_data_quality_anomalies:rate10m > {num(t.data_anomaly_spike_factor)} * "
            "job_dataset:mystocks_data_quality_anomalies:rate1d",
            for_="10m", severity="warning", category="business", priority="P2", team="data",
            summary="Data anomalies spike in {{ $labels.dataset }}.",
            description="{{ $labels.dataset }} shows {{ $value | humanize }} anomalies/min, over "
            f"{num(t.data_anomaly_spike_factor)}x its daily average.",
            threshold=f"anomalies > {num(t.data_anomaly_spike_factor)}x the 1-day rate and > "
            f"{num(t.data_anomalies_per_minute)}/min, for 10m",
            why="Relative to the dataset's own baseline, because some datasets always have a few outliers; "
            f"the {num(t.data_anomalies_per_minute)}/min floor keeps a quiet dataset's first anomalies from alerting.",
            checks=("Which kind: `sum by (kind) (rate(mystocks_data_quality_anomalies_total[10m]))`.",
             "The source feeding the dataset: a provider sending bad ticks or duplicates?",
             "Market events (a limit-up wave) that are real, not errors: then silence it."),
        ),
    )
