"""SLOs: SLIs recorded over every window, multiwindow multi-burn-rate alerts (Google SRE
workbook, ch. 5), an error-budget-exhausted alert and an SLI-absent alert for each SLO in
``cfg.slos`` (the alerts Sloth and Pyrra generate)."""

from __future__ import annotations

import re

from mystocks_otel_mixin import config
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, gated, le_matcher, num
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record

HTTP = "http_server_request_duration_seconds"
#: The recorded freshness check: 1 while every real-time feed is fresh, 0 when one is stale;
#: recorded only while the market is open (rules/market_data.py).
FRESH = "job:mystocks_data_quality_realtime_fresh:bool"
SESSION = "mystocks:trading_session:open"
OBJECTIVE = "slo:objective:ratio"
#: The SLO period, and the records the error-budget-exhausted alert reads.
PERIOD = "30d"
PERIOD_SECONDS = 30 * 86400
BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"
EVENTS, BAD_EVENTS = "slo:sli_events:rate5m", "slo:sli_bad_events:rate5m"
#: A request-based budget is judged once the period holds at least this many budgets' worth
#: of single errors: with a 0.1% budget, 10,000 requests (at the period's average rate).
MIN_BUDGET_EVENTS = 10

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

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(window: str) -> int:
    """``"5m"`` -> 300 (the Prometheus durations the SLO windows use)."""
    match = re.fullmatch(r"(\d+)([smhdw])", window)
    if not match:
        raise ValueError(f"SLO window {window!r}: expected a duration such as 5m, 1h or 3d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def duration(total: int) -> str:
    """300 -> ``"5m"``: the largest unit that divides it."""
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if total % size == 0:
            return f"{total // size}{unit}"
    raise AssertionError(total)  # pragma: no cover - every whole second divides by 1 s


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _request_based(slo: config.SLO) -> bool:
    return slo.name.startswith("api-")


def edge_window(cfg: MixinConfig, window: str) -> str:
    """The least in-session time a freshness window is judged over: the window itself, but at
    most the shortest session (the 2 h morning or afternoon), which is all a window can hold
    at the end of a session."""
    shortest = min(end - start for start, end in cfg.sessions.utc_minutes) * 60
    return duration(min(seconds(window), shortest))


def freshness_error_expr(cfg: MixinConfig, slo: config.SLO, window: str) -> str:
    """Stale evaluations / in-session evaluations in ``window``, the denominator at least the
    evaluations of :func:`edge_window`. The check is recorded only while the market is open, so
    at the open a 1-hour window holds its first minutes only: one late snapshot among 8 would
    read as a 33% burn and page. Counting the evaluations Prometheus made in the window (the
    always-recorded objective), up to a whole session, treats the closed minutes as neither
    good nor bad but as "not enough data": at the open the window burns as fast as the same
    window mid-session. Counting evaluations, not seconds, keeps it right at any evaluation
    interval."""
    fresh = PromQL().sel(FRESH)
    evaluations = PromQL().sel(OBJECTIVE, f'slo="{slo.name}"')
    in_session = f"count_over_time({fresh}[{window}])"
    return (f"({in_session} - sum_over_time({fresh}[{window}]))\n/\n"
            f"clamp_min({in_session}, scalar(count_over_time({evaluations}[{edge_window(cfg, window)}])))")


def sli_error_expr(q: PromQL, slo: config.SLO, window: str, cfg: MixinConfig = config.DEFAULT) -> str:
    """The SLI's error ratio over ``window``: bad events / all events, with labels {job}."""
    total = q.sum_rate(f"{HTTP}_count", "job", window)
    if slo.name == "api-availability":
        bad = q.sum_rate(f"{HTTP}_count", "job", window, 'http_response_status_code=~"5.."')
        return f"({bad} or {total} * 0)\n/\n({total} > 0)"
    if slo.name == "api-latency":
        good = q.sum_rate(f"{HTTP}_bucket", "job", window, le_matcher(slo.threshold_seconds))
        return f"1 - ({good}\n/\n({total} > 0))"
    if slo.name == "market-data-freshness":
        return freshness_error_expr(cfg, slo, window)
    raise ValueError(f"no SLI defined for SLO {slo.name!r}")


def _period_records(cfg: MixinConfig, slo: config.SLO) -> tuple[Record, ...]:
    """The error ratio over the SLO period and the budget left, as Sloth records them."""
    labels = {"slo": slo.name}
    rec, matcher = PromQL(), f'slo="{slo.name}"'
    if _request_based(slo):
        ratio = (f"sum_over_time({rec.sel(BAD_EVENTS, matcher)}[{PERIOD}])\n/\n"
                 f"(sum_over_time({rec.sel(EVENTS, matcher)}[{PERIOD}]) > 0)")
        how = "bad events / events, every request weighing the same"
    else:
        ratio = freshness_error_expr(cfg, slo, PERIOD)
        how = "stale / in-session evaluations"
    return (
        Record(record=config.slo_error_ratio_record(PERIOD), expr=ratio, labels=labels,
               why=f"{slo.name}: the error ratio over the {PERIOD} period ({how}), over what "
               "Prometheus holds of it (its retention; the dashboard reads the full period from "
               "the long-term store)."),
        Record(record=BUDGET_REMAINING, labels=labels,
               expr=f"1 - {rec.sel(config.slo_error_ratio_record(PERIOD), matcher)} / {num(slo.error_budget)}",
               why=f"{slo.name}: the share of the {PERIOD} error budget not yet spent (below 0: breached)."),
    )


def _records(cfg: MixinConfig) -> tuple[Record, ...]:
    q = PromQL(cfg.app_job)
    records = []
    for slo in cfg.slos:
        labels = {"slo": slo.name}
        records.append(Record(record=OBJECTIVE, expr=f"vector({num(slo.objective)})",
                              why=f"The objective of {slo.name}, for the SLO dashboard; recorded at "
                              "every evaluation, so its sample count over a window is the number of "
                              "evaluations the window holds (the freshness SLI's denominator floor).",
                              labels=labels))
        records.append(Record(record="slo:error_budget:ratio", expr=f"vector({num(slo.error_budget)})",
                              why=f"The error budget of {slo.name} (1 - objective).", labels=labels))
        if _request_based(slo):
            records.extend(_events_records(q, slo))
        for window in cfg.slo_windows:
            records.append(Record(record=config.slo_error_ratio_record(window),
                                  expr=sli_error_expr(q, slo, window, cfg),
                                  why=f"{slo.name}: {slo.description} Error ratio over {window}."
                                  + ("" if _request_based(slo) else
                                     f" Divided by at least the evaluations of {edge_window(cfg, window)}, "
                                     "so that the first minutes after an open do not fill the window."),
                                  labels=labels))
        records.extend(_period_records(cfg, slo))
    return tuple(records)


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
        Record(record=EVENTS, expr=total, labels=labels,
               why=f"{slo.name}: events (requests) per second. With the bad events, the 30-day "
               "error ratio weighs every request equally, not every 5 minutes: a busy hour counts "
               "more than a quiet one."),
        Record(record=BAD_EVENTS, expr=f"({bad} or {total} * 0)", labels=labels,
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
    burn = "\nor\n".join(clauses)
    return Alert(
        name=f"{_camel(slo.name)}ErrorBudgetBurn{'Fast' if page else 'Slow'}",
        # Every window pair is gated, not the last one only (`and` binds tighter than `or`).
        expr=burn if _request_based(slo) else gated(burn, SESSION),
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
               "Time-based and gated on the trading session as a whole (every window pair, in "
               "parentheses: `and` binds tighter than `or`, and an ungated pair kept the page "
               "burning after the close and the ticket firing through lunch). The SLI is recorded "
               "only while the market is open, and each window's ratio is divided by at least the "
               "evaluations of the window (up to one session): at the open, 45 s of stale data "
               "among the first minutes weighs what it weighs mid-session, so it does not page, "
               "while a real stall from the open pages as fast as one mid-session. On a holiday "
               "the alert carries gate=trading_session for the holiday silence.")
        ),
        checks=CATEGORY_CHECKS[slo.name],
        dashboard=config.SLO_DASHBOARD_UID,
    )


def exhausted_alert_name(slo: config.SLO) -> str:
    return f"{_camel(slo.name)}ErrorBudgetExhausted"


def _exhausted_alert(cfg: MixinConfig, slo: config.SLO) -> Alert:
    rec = PromQL()
    matcher = f'slo="{slo.name}"'
    remaining = f"{rec.sel(BUDGET_REMAINING, matcher)} <= 0"
    if _request_based(slo):
        floor_rate = MIN_BUDGET_EVENTS / slo.error_budget / PERIOD_SECONDS
        expr = (f"{remaining}\nand on (job)\n"
                f"avg_over_time({rec.sel(EVENTS, matcher)}[{PERIOD}]) > {num(floor_rate)}")
        floor = (f"Judged once the period's average traffic would bring {MIN_BUDGET_EVENTS} budgets' "
                 f"worth of requests ({num(MIN_BUDGET_EVENTS / slo.error_budget)} at "
                 f"{num(slo.objective * 100)}%): a handful of errors among a handful of requests "
                 "is not a spent budget.")
    else:
        day = duration(sum(end - start for start, end in cfg.sessions.utc_minutes) * 60)
        expr = (f"{remaining}\nand on (job)\n"
                f"count_over_time({rec.sel(FRESH)}[{PERIOD}]) >= scalar(count_over_time({rec.sel(OBJECTIVE, matcher)}[{day}]))")
        floor = (f"Judged once Prometheus holds a trading day of in-session evaluations ({day}; counted "
                 "against the always-recorded objective, so at any evaluation interval): two late "
                 "opens in the first session of a new Prometheus are not a spent month.")
    return Alert(
        name=exhausted_alert_name(slo),
        expr=expr,
        for_="15m",
        severity="warning",
        category="slo",
        priority="P2",
        team=TEAM[slo.name],
        service=None if _request_based(slo) else "market-data",
        summary=f"SLO {slo.name} has spent its {PERIOD} error budget.",
        description=(f"The {slo.name} SLO ({num(slo.objective * 100)}% over {PERIOD}) has "
                     "{{ $value | humanizePercentage }} of its error budget left: the objective is "
                     "breached over the period Prometheus holds. The error-budget policy applies "
                     "(reliability work before features)."),
        threshold=f"budget remaining over {PERIOD} <= 0 for 15m",
        why=("The burn-rate alerts say how fast the budget goes; this one says it is gone, the "
             "signal an error-budget policy acts on (Sloth and Pyrra record the remaining budget "
             "the same way). A ticket (warning, P2), not a page: nothing new broke, and the "
             "burn alerts paged for what did. `for: 15m` rides over the recording of a restart. "
             + floor),
        checks=("The SLO dashboard: when was the budget spent (the 30-day rolling panel)?",
                "The incidents of the period and whether they are fixed for good.",
                "The error-budget policy: freeze risky releases until the budget recovers."),
        dashboard=config.SLO_DASHBOARD_UID,
    )


def _absent_expr(cfg: MixinConfig, slo: config.SLO) -> str:
    q = PromQL(cfg.app_job)
    if slo.name == "api-availability":
        return gated(f"absent({q.sel(f'{HTTP}_count')})", SESSION)
    if slo.name == "api-latency":
        # The threshold's bucket, while the requests it should count are there: different
        # buckets in the app (MYSTOCKS_OTEL_HTTP_BUCKETS) than in the rules' config.
        return (f"absent({q.sel(f'{HTTP}_bucket', le_matcher(slo.threshold_seconds))})\n"
                f"and on () count({q.sel(f'{HTTP}_count')}) > 0")
    if slo.name == "market-data-freshness":
        datasets = 'dataset=~"' + "|".join(cfg.sessions.realtime_datasets) + '"'
        return gated(f"absent({q.sel('mystocks_data_quality_freshness_seconds', datasets)})", SESSION)
    raise ValueError(f"no SLI defined for SLO {slo.name!r}")


def _absent_alert(cfg: MixinConfig, slo: config.SLO) -> Alert:
    if slo.name == "api-latency":
        what = (f"no `{HTTP}_bucket` with le=\"{num(slo.threshold_seconds)}\" while requests are counted: "
                "the app's HTTP buckets do not include the SLO threshold")
        why = ("Without the threshold's bucket the latency SLI has no good events and records "
               "nothing: the burn alerts go blind, silently. That happens when the app's "
               "MYSTOCKS_OTEL_HTTP_BUCKETS differ from the http_buckets the rules were rendered "
               "with (render checks its own config, not the running app). Not gated: the HTTP "
               "count is the evidence that the bucket should be there.")
        for_ = "15m"
    elif slo.name == "api-availability":
        what = f"no `{HTTP}_count` for the job during the trading session"
        why = ("absent() on the SLI's metric, as Pyrra generates: a renamed metric (semantic "
               "conventions opt-in), a lost instrumentation or a relabelling leave the burn "
               "alerts nothing to read, and they stay silent. Session-aware: an API restarted at "
               "night has no HTTP series until its first request (health and metrics paths are "
               "not counted), which is fine; in the session a stock API serves its users. "
               "`for: 15m` gives the open a fair chance. HttpMetricsAbsent is the per-instance check.")
        for_ = "15m"
    else:
        what = "no freshness gauge of the real-time datasets during the trading session"
        why = ("The freshness SLI is the freshness gauge of the real-time datasets; when it is "
               "gone the SLI records nothing, spends no budget and the burn alerts stay silent "
               "through a real outage. Session-bound like the SLI: outside the session no gauge "
               "is expected. `for: 10m` gives the feeds a fair chance after the open.")
        for_ = "10m"
    return Alert(
        name=f"{_camel(slo.name)}SliAbsent",
        expr=_absent_expr(cfg, slo),
        for_=for_,
        severity="warning",
        category="slo",
        priority="P2",
        team=TEAM[slo.name],
        service=None if _request_based(slo) else "market-data",
        session_gated=slo.name != "api-latency",
        extra_labels={"slo": slo.name},
        summary=f"The SLI of SLO {slo.name} has no data.",
        description=f"The {slo.name} SLI cannot be measured: {what}. Its burn-rate alerts are blind.",
        threshold=f"SLI metric absent for {for_}",
        why=why,
        checks=("`curl /metrics` on an API instance: is the series there, under this name and labels?",
                "The app's settings: OTEL_SEMCONV_STABILITY_OPT_IN, MYSTOCKS_OTEL_HTTP_BUCKETS, disabled instrumentations.",
                "Prometheus `/targets` and relabelling rules for the job."),
        dashboard=config.SLO_DASHBOARD_UID,
    )


def records(cfg: MixinConfig) -> Group:
    return Group("mystocks-slo.rules", _records(cfg))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    out = []
    for slo in cfg.slos:
        out += [_burn_alert(cfg, slo, "critical"), _burn_alert(cfg, slo, "warning"),
                _exhausted_alert(cfg, slo), _absent_alert(cfg, slo)]
    return tuple(out)
