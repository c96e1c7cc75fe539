"""API: request rate, 5xx ratio and latency; recorded once, alerted on with a traffic floor."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, dur, num, pct, ratio
from mystocks_otel_mixin.lib.rulekit import Alert, Group, Record
from mystocks_otel_mixin.rules.market_data import OPEN

HTTP = "http_server_request_duration_seconds"

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


def records(cfg: MixinConfig) -> Group:
    q = PromQL(cfg.app_job)
    return Group("mystocks-http.rules", (
        Record(record="job:http_server_requests:rate5m", expr=q.sum_rate(f"{HTTP}_count", "job"),
               why="Request rate of the API (panel HTTP Request Rate; traffic floor of the ratio alerts)."),
        Record(record="job:http_server_requests:rate1m", expr=q.sum_rate(f"{HTTP}_count", "job", window="1m"),
               why="Request rate of the last minute: what ApiTrafficCollapse compares with the usual "
               "level, so a collapse shows in one minute rather than five (4 scrapes at 15 s)."),
        Record(record="job:http_server_requests:usual_rate5m",
               expr="max by (job) (\n"
               '  label_replace(job:http_server_requests:rate5m offset 1d, "usual", "yesterday", "", "")\n'
               "  or\n"
               '  label_replace(job:http_server_requests:rate5m offset 1w, "usual", "last_week", "", "")\n'
               "  or\n"
               '  label_replace(avg_over_time(job:http_server_requests:rate5m[1h]), "usual", "last_hour", "", "")\n'
               ")",
               why="The API's usual request rate now: the highest of the same time yesterday, the same "
               "time last week (Monday after a weekend, the day after a holiday) and the last hour's "
               "mean. The baseline of ApiTrafficCollapse."),
        Record(record="job_method_route_code:http_server_requests:rate5m",
               expr=q.sum_rate(f"{HTTP}_count", "job, http_request_method, http_route, http_response_status_code"),
               why="Request rate by method, route and status, as the dashboard shows it. Routes are "
               "templates, so this stays far below the 10,000-series budget."),
        Record(record="job:http_server_requests_errors:rate5m",
               expr=q.sum_rate(f"{HTTP}_count", "job", extra='http_response_status_code=~"5.."'),
               why="5xx responses only: a 4xx is the client's fault and does not spend the error budget."),
        Record(record="job:http_server_requests_errors:ratio_rate5m",
               expr=ratio("job:http_server_requests_errors:rate5m", "job:http_server_requests:rate5m"),
               why="Share of requests answered with a 5xx; 0 while no 5xx was ever seen, absent with no traffic."),
        Record(record="job:http_server_requests_client_errors:ratio_rate5m",
               expr=ratio(q.sum_rate(f"{HTTP}_count", "job", extra='http_response_status_code=~"4.."'),
                          "job:http_server_requests:rate5m"),
               why="Share of 4xx responses (panel HTTP Error Rate): a jump means a broken client release."),
        *(Record(record=f"job:{HTTP}:p{int(p * 100)}_5m", expr=q.quantile(p, HTTP, "job"),
                 why=f"API latency p{int(p * 100)} (panel HTTP Duration; p95 drives ApiHighResponseTime). "
                 "Aggregated by le because OTel adds scope and instance labels.")
          for p in (0.5, 0.95, 0.99)),
        Record(record=f"job_route:{HTTP}:p95_5m", expr=q.quantile(0.95, HTTP, "job, http_route"),
               why="p95 by route: which endpoint is slow when the API as a whole is."),
    ))


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    floor = f"≥ {num(t.min_request_rate)} req/s"
    budget = cfg.slo("api-availability").error_budget
    _FLOOR = f"and on (job) job:http_server_requests:rate5m > {num(t.min_request_rate)}"
    _P95 = q.sel("job:http_server_request_duration_seconds:p95_5m")
    _ERR = q.sel("job:http_server_requests_errors:ratio_rate5m")
    usual = q.sel("job:http_server_requests:usual_rate5m")
    collapse, usual_floor = t.traffic_collapse_ratio, t.traffic_collapse_min_usual_rate
    no_requests_yet = (f"max by (job) ({q.sel('up')} == 1) * 0\n"
                       f"    unless on (job) count by (job) ({q.sel(f'{HTTP}_count')})")
    return (
        Alert(
            name="ApiTrafficCollapse",
            expr=f"(\n  {q.sel('job:http_server_requests:rate1m')}\n  or on (job)\n  {no_requests_yet}\n)\n"
            f"< on (job) ({num(collapse)} * {usual})\n"
            f"and on (job) {usual} > {num(usual_floor)}\n{OPEN}",
            for_="1m", severity="critical", category="api", priority="P0", team="platform",
            session_gated=True,
            summary="API traffic has collapsed while the market is open.",
            description="{{ $labels.job }} served {{ $value | humanize }} requests/s in the last minute, under "
            f"{pct(collapse)} of its usual level, while the market is open: users cannot reach it.",
            threshold=f"1m request rate < {pct(collapse)} of the usual rate (yesterday, last week, last hour; "
            f"usual ≥ {num(usual_floor)} req/s), market open, for 1m",
            why="An outage in front of the app (load balancer, DNS, an expired TLS certificate) stops "
            "every request before it arrives: `up` stays 1 (Prometheus scrapes from inside), no "
            "request fails because none is made, and every ratio alert goes quiet with its traffic "
            "floor. Only the missing traffic tells. During the session traffic never falls to a "
            f"tenth of its usual level by itself, so that pages. The usual level is the most of the "
            "same time yesterday, last week and the last hour's mean (the open's ramp compares "
            f"with yesterday's); below {num(usual_floor)} req/s usual, a quiet app's empty minute "
            "is chance, not an outage: no page. An app up with no request series yet (restarted "
            "behind a dead load balancer) counts as 0. `for: 1m` after a one-minute window: a "
            "collapse pages about 2 minutes after it starts. Session-gated: at night, at the "
            "weekend and over lunch low traffic is normal.",
            checks=("Reach the API from outside as a user does: `curl -v https://<public host>/health` (DNS, TLS expiry, load balancer).",
                    "The load balancer's and the CDN's health and logs; the certificate's expiry date.",
                    "WebSocket connections (panel WebSocket Connections): did they drop at the same time?"),
        ),
        Alert(
            name="ApiHighResponseTime", expr=f"{_P95} > {num(t.api_latency_p95_warning_seconds)}\n{_FLOOR}", for_="5m",
            severity="warning", category="api", priority="P1", team="performance",
            summary=f"API p95 latency is above {num(t.api_latency_p95_warning_seconds)} s.",
            description="p95 latency of {{ $labels.job }} is {{ $value | humanizeDuration }} over the last 5 minutes "
            f"(threshold {dur(t.api_latency_p95_warning_seconds)}).",
            threshold=f"p95 > {num(t.api_latency_p95_warning_seconds)} s for 5m (with {floor})",
            why="The specification's threshold. 1 s is also the api-latency SLO's bound, so a p95 above it "
            "means over 5% of requests miss the SLO: 5x its 1% budget. 5 minutes rides out a GC pause "
            f"or a cold cache after a deploy. The traffic floor ({num(t.min_request_rate * 300)} requests in 5 minutes) keeps one "
            "slow request of a quiet hour, which is the p95 of a handful, from alerting.",
            checks=_LATENCY_CHECKS,
        ),
        Alert(
            name="ApiCriticalResponseTime", expr=f"{_P95} > {num(t.api_latency_p95_critical_seconds)}\n{_FLOOR}", for_="3m",
            severity="critical", category="api", priority="P0", team="performance",
            summary=f"API p95 latency is above {num(t.api_latency_p95_critical_seconds)} s.",
            description="p95 latency of {{ $labels.job }} is {{ $value | humanizeDuration }} over the last 5 minutes "
            f"(threshold {dur(t.api_latency_p95_critical_seconds)}): one request in twenty takes longer than users wait.",
            threshold=f"p95 > {num(t.api_latency_p95_critical_seconds)} s for 3m (with {floor})",
            why=f"{num(t.api_latency_p95_critical_seconds)} s is a histogram bucket bound (so the estimate is exact there) and "
            f"{num(t.api_latency_p95_critical_seconds / t.api_latency_p95_warning_seconds)}x the warning. Web "
            "clients retry or give up at about 3 s, so the slowest 5% of requests are effectively failing "
            f"and the retries add load: page after 3 minutes, not 5. With fewer than {num(t.min_request_rate)} req/s the "
            "p95 is one or two requests: no page.",
            checks=_LATENCY_CHECKS,
        ),
        Alert(
            name="ApiHighErrorRate", expr=f"{_ERR} > {num(t.api_error_ratio_warning)}\n{_FLOOR}", for_="5m",
            severity="warning", category="api", priority="P1", team="platform",
            summary=f"More than {pct(t.api_error_ratio_warning)} of API requests fail with a 5xx.",
            description="{{ $value | humanizePercentage }} of requests to {{ $labels.job }} answered 5xx over the "
            f"last 5 minutes (threshold {pct(t.api_error_ratio_warning)}).",
            threshold=f"5xx ratio > {pct(t.api_error_ratio_warning)} for 5m (with {floor})",
            why=f"{pct(t.api_error_ratio_warning)} is {num(t.api_error_ratio_warning / budget)}x the api-availability "
            f"budget ({pct(budget)}): sustained, the month's budget is gone in {num(30 * budget / t.api_error_ratio_warning)} "
            f"days. The SLO burn alerts catch slower burns. Requiring {num(t.min_request_rate)} req/s keeps one failure among "
            "a handful of night-time requests from alerting.",
            checks=_ERROR_CHECKS,
        ),
        Alert(
            name="ApiCriticalErrorRate", expr=f"{_ERR} > {num(t.api_error_ratio_critical)}\n{_FLOOR}", for_="1m",
            severity="critical", category="api", priority="P0", team="platform",
            summary=f"More than {pct(t.api_error_ratio_critical)} of API requests fail with a 5xx.",
            description="{{ $value | humanizePercentage }} of requests to {{ $labels.job }} answered 5xx over the "
            f"last 5 minutes (threshold {pct(t.api_error_ratio_critical)}).",
            threshold=f"5xx ratio > {pct(t.api_error_ratio_critical)} for 1m (with {floor})",
            why=f"{pct(t.api_error_ratio_critical)} is {num(t.api_error_ratio_critical / budget)}x the availability budget: "
            f"the month's budget is gone in {num(round(720 * budget / t.api_error_ratio_critical))} hours, and one user "
            f"action in {num(round(1 / t.api_error_ratio_critical))} fails. One minute rules out a single bad scrape; the 5m window and the "
            "traffic floor already keep blips and quiet hours out, and a P0 must page fast.",
            checks=_ERROR_CHECKS,
        ),
    )
