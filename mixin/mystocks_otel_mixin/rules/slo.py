"""SLOs: SLIs recorded over every window, and multiwindow multi-burn-rate alerts (Google SRE
workbook, ch. 5) for each SLO in ``cfg.slos``."""

from __future__ import annotations

from mystocks_otel_mixin import config
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, le_matcher, num
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

HTTP = "http_server_request_duration_seconds"
TEAM = {"api-availability": "platform", "api-latency": "performance", "market-data-freshness": "data"}
CATEGORY_CHECKS = {
    "api-availability": (
        "Which routes answer 5xx: `sum by (http_route) (rate(http_server_request_duration_seconds_count{http_response_status_code=~\"5..\"}[5m]))`.",
        "Whether a dependency is down (PostgreSQLDown, RedisDown, DependencyUnavailable firing?).",
        "The last deploy or config change: roll back first, investigate after.",
    ),
    "api-latency": (
        "Which routes are slow: the `job_route:http_server_request_duration_seconds:p95_5m` series.",
        "Database pool usage and slow queries (DatabaseHighConnectionUsage, DatabaseSlowQueries).",
        "CPU saturation of the API hosts and the cache hit ratio.",
    ),
    "market-data-freshness": (
        "Which dataset is stale: `job_dataset:mystocks_data_quality_freshness_seconds:max`.",
        "Feed errors by source (MarketDataFeedErrors) and whether points are still processed.",
        "Whether the market is really open today (an exchange holiday is not an incident: silence it).",
    ),
}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def sli_error_expr(q: PromQL, slo: config.SLO, window: str) -> str:
    """The SLI's error ratio over ``window``: bad events / all events, with labels {job}."""
    total = q.sum_rate(f"{HTTP}_count", "job", window)
    if slo.name == "api-availability":
        bad = q.sum_rate(f"{HTTP}_count", "job", window, 'http_response_status_code=~"5.."')
        return f"({bad} or {total} * 0)\n/\n({total} > 0)"
    if slo.name == "api-latency":
        good = q.sum_rate(f"{HTTP}_bucket", "job", window, le_matcher(slo.threshold_seconds))
        return f"1 - ({good}\n/\n({total} > 0))"
    if slo.name == "market-data-freshness":
        return f"1 - avg_over_time(job:mystocks_data_quality_realtime_fresh:bool[{window}])"
    raise ValueError(f"no SLI defined for SLO {slo.name!r}")


def _records(cfg: MixinConfig) -> tuple[Record, ...]:
    q = PromQL(cfg.app_job)
    records = []
    for slo in cfg.slos:
        labels = {"slo": slo.name}
        records.append(Record(record="slo:objective:ratio", expr=f"vector({num(slo.objective)})",
                              why=f"The objective of {slo.name}, for the SLO dashboard.", labels=labels))
        records.append(Record(record="slo:error_budget:ratio", expr=f"vector({num(slo.error_budget)})",
                              why=f"The error budget of {slo.name} (1 - objective).", labels=labels))
        if _request_based(slo):
            records.extend(_events_records(q, slo))
        for window in cfg.slo_windows:
            records.append(Record(record=config.slo_error_ratio_record(window), expr=sli_error_expr(q, slo, window),
                                  why=f"{slo.name}: {slo.description} Error ratio over {window}.",
                                  labels=labels))
    return tuple(records)


def _request_based(slo: config.SLO) -> bool:
    return slo.name.startswith("api-")


def _events_records(q: PromQL, slo: config.SLO) -> tuple[Record, ...]:
    """Good and bad event rates of a request-based SLO, for a 30-day ratio weighted by
    requests: sum_over_time(bad[30d]) / sum_over_time(events[30d]) in the long-term store."""
    labels = {"slo": slo.name}
    total = q.sum_rate(f"{HTTP}_count", "job")
    if slo.name == "api-availability":
        bad = q.sum_rate(f"{HTTP}_count", "job", extra='http_response_status_code=~"5.."')
    else:
        good = q.sum_rate(f"{HTTP}_bucket", "job", extra=le_matcher(slo.threshold_seconds))
        bad = f"{total}\n-\n{good}"
    return (
        Record(record="slo:sli_events:rate5m", expr=total, labels=labels,
               why=f"{slo.name}: events (requests) per second. With the bad events, the 30-day "
               "error ratio weighs every request equally, not every 5 minutes: a busy hour counts "
               "more than a quiet one."),
        Record(record="slo:sli_bad_events:rate5m", expr=f"({bad} or {total} * 0)", labels=labels,
               why=f"{slo.name}: bad events per second (0 while none was ever seen)."),
    )


def _burn_alert(cfg: MixinConfig, slo: config.SLO, severity: str) -> Alert:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    pairs = [(long, short, factor) for sev, long, short, factor in cfg.burn_rates if sev == severity]
    recorded = PromQL()  # the SLO records carry their own job and slo labels
    matcher = f'slo="{slo.name}"'
    clauses = []
    for long, short, factor in pairs:
        limit = num(factor * slo.error_budget)
        floor = (f"\nand on (job)\n  {q.sum_rate(f'{HTTP}_count', 'job', short)} > {num(t.min_request_rate)}"
                 if _request_based(slo) else "")
        clauses.append(
            f"(\n  {recorded.sel(config.slo_error_ratio_record(long), matcher)} > {limit}\nand\n"
            f"  {recorded.sel(config.slo_error_ratio_record(short), matcher)} > {limit}{floor}\n)"
        )
    windows = " or ".join(f"{f:g}x over {lw} and {sw}" for lw, sw, f in pairs)
    page = severity == "critical"
    budget_days = ", ".join(f"{30 / f:g} days" for _, _, f in pairs)
    return Alert(
        name=f"{_camel(slo.name)}ErrorBudgetBurn{'Fast' if page else 'Slow'}",
        expr="\nor\n".join(clauses) + ("" if _request_based(slo) else "\nand on () mystocks:trading_session:open"),
        session_gated=not _request_based(slo),
        service=None if _request_based(slo) else "market-data",
        for_="2m" if page else "15m",
        severity=severity,
        category="slo",
        priority="P0" if page else "P2",
        team=TEAM[slo.name],
        summary=f"SLO {slo.name} is burning its error budget {'fast' if page else 'steadily'}.",
        description=(
            f"The {slo.name} SLO ({num(slo.objective * 100)}% over 30 days) burns its error budget at "
            f"{windows}. Error ratio now {{{{ $value | humanizePercentage }}}} "
            f"(budget {num(slo.error_budget * 100)}%)."
        ),
        threshold=f"burn {windows}",
        why=(
            f"Multiwindow multi-burn-rate ({'page' if page else 'ticket'}): at these rates the 30-day "
            f"budget is gone in {budget_days}. The long window proves the burn is significant, the "
            f"short one that it is still happening, so the alert resolves soon after the fix. "
            f"`for: {'2m' if page else '15m'}` only drops a single-evaluation blip. "
            + (f"Each short window needs at least {num(t.min_request_rate)} req/s: at one request "
               "a minute a single 503 is a 1.6% hourly error ratio, over the page threshold, and "
               "that is noise, not a burn."
               if _request_based(slo) else
               "Time-based and gated on the trading session: the SLI is recorded only while the "
               "market is open, and the alert is silent outside it (lunch break included); on a "
               "holiday it carries gate=trading_session for the holiday silence.")
        ),
        checks=CATEGORY_CHECKS[slo.name],
        dashboard=config.SLO_DASHBOARD_UID,
    )


def records(cfg: MixinConfig) -> Group:
    return Group("mystocks-slo.rules", _records(cfg))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    return tuple(_burn_alert(cfg, slo, sev) for slo in cfg.slos for sev in ("critical", "warning"))
