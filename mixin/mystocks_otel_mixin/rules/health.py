"""Health: the API's own target, the dependencies it probes, its components."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, num, pct
from mystocks_otel_mixin.lib.rulekit import Alert
from mystocks_otel_mixin.rules.market_data import settled

_AVAIL = "mystocks_health_dependency_availability"
_STATUS = "mystocks_health_component_status"
#: Dependencies with alerts of their own (PostgreSQLDown, RedisDown): left out of the generic ones.
_OWN_ALERTS = ("postgresql", "redis")
#: The monitoring pipeline: its outage is never a page (the meta alerts MonitoringTargetDown and
#: TelemetryExportFailing are warnings), so the generic critical alert leaves it out.
_MONITORING = ("otel_collector",)
#: The service a dependency or component is (the `service` label PostgreSQLDown and RedisDown
#: carry), so that Alertmanager inhibits the generic alert by the specific one on equal service.
_SERVICE_OF = {"postgresql": "postgresql", "database": "postgresql", "redis": "redis",
               "cache": "redis", "market_data": "market-data", "market_data_feed": "market-data",
               "otel_collector": "monitoring", "exporter": "monitoring"}


def _service_template(label: str) -> str:
    """A label template mapping ``$labels.<label>`` to its service (default: the API)."""
    branches = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq $labels.{label} "{k}" }}}}{v}'
                       for i, (k, v) in enumerate(_SERVICE_OF.items()))
    return branches + "{{ else }}mystocks-api{{ end }}"
_DEP_CHECKS = (
    "Probe the dependency from the API host (`pg_isready`, `redis-cli ping`, `curl` the feed).",
    "The dependency's own logs and host; a failover in progress?",
    "Network: DNS, security groups, connection limits (`max_connections`, `maxclients`).",
)


def _down(q: PromQL, name: str, dependency: str, what: str, service: str) -> Alert:
    avail = q.sel(_AVAIL, f'dependency="{dependency}"')
    return Alert(
        name=name, expr=f"min by (job, dependency) ({avail}) == 0", for_="30s",
        severity="critical", category="health", priority="P0", team="platform", service=service,
        summary=f"{what} is unreachable from the API.",
        description=f"The health probe of {{{{ $labels.job }}}} has not reached {what} for 30 seconds.",
        threshold="probe fails for 30s",
        why=f"{what} is on the request path of nearly every call: without it the API fails or serves "
        "stale data. Three failed 15 s probes in a row (each a new connection) rule out a lost "
        "packet. 30 s, not more, because this is the cause and must fire before its symptoms: "
        "the API's 5xx ratio crosses 5% about 30 s after the first failed request and "
        "ApiCriticalErrorRate then waits 1m, so PostgreSQLDown (or RedisDown) is already "
        "firing and Alertmanager opens one incident, for the cause.",
        checks=_DEP_CHECKS,
    )


def records(cfg: MixinConfig) -> None:
    return None


def _gated(label: str, values: tuple[str, ...], expr_of, seconds: float) -> str:
    """``expr_of(matcher)`` for the session-bound ``values`` of ``label``, judged only once the
    session is ``seconds`` old, and labelled gate=trading_session (one silence covers them)."""
    matcher = f'{label}=~"{"|".join(values)}"'
    return (f'label_replace(\n  {expr_of(matcher)},\n  "gate", "trading_session", "", ""\n)\n'
            f"{settled(seconds)}")


def _health(label: str, always: str, feeds: tuple[str, ...], expr_of, seconds: float) -> str:
    """The health alert's expression: ``always`` judged at any hour, ``feeds`` (session-bound
    sources, cfg.sessions.feed_*) only inside a session older than ``seconds``."""
    expr = expr_of(always)
    if feeds:
        expr = f"{expr}\nor\n(\n{_gated(label, feeds, expr_of, seconds)}\n)"
    return expr


def _not(label: str, values) -> str:
    return f'{label}!~"{"|".join(values)}"'


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t, s = PromQL(cfg.app_job), cfg.thresholds, cfg.sessions
    critical = t.dependency_availability_critical
    stale = t.stale_data_seconds
    feeds_c, feeds_d = s.feed_components, s.feed_dependencies
    feeds_text = f"({', '.join(feeds_c + feeds_d)})"
    component = _health("component", _not("component", feeds_c or ("",)), feeds_c,
                        lambda m: f"min by (job, component) ({q.sel(_STATUS, m)}) == 0", stale)
    unavailable = _health("dependency", _not("dependency", _OWN_ALERTS + feeds_d), feeds_d,
                          lambda m: f"min by (job, dependency) ({q.sel(_AVAIL, m)}) == 0", stale)
    down_most = _health("dependency", _not("dependency", _OWN_ALERTS + _MONITORING + feeds_d), feeds_d,
                        lambda m: f"avg by (job, dependency) (avg_over_time({q.sel(_AVAIL, m)}[10m])) < {num(critical)}",
                        600)
    gate_why = (f"Session-bound sources {feeds_text} deliver only while the market is open, and an app "
                "may derive their health from freshness (the reference app does): they are judged only "
                "inside a session, and only once it is older than")
    up = q.sel("up")
    return (
        Alert(
            name="ComponentUnhealthy", service=_service_template("component"),
            expr=component, for_="2m",
            severity="warning", category="health", priority="P1", team="platform",
            summary="Component {{ $labels.component }} is unhealthy.",
            description="The health check of {{ $labels.component }} in {{ $labels.job }} has failed for 2 minutes.",
            threshold=f"status 0 for 2m (session-bound components: market open for > {num(stale)} s)",
            why="Eight failed 15 s probes are no blip. A warning, because the specific alerts (database, "
            f"cache, market data) say how bad it is and page when it is. {gate_why} {num(stale)} s "
            "(the staleness threshold), so the closed hours' 'stale' before the first new point is "
            "not a failure; those carry gate=trading_session.",
            checks=("`GET /metrics/health` and the component's log lines.",
             "Which alerts fire for the same component (DatabaseConnectionPoolExhausted, RedisDown ...).",
             "Restart only the component's worker if the check is stuck, not the whole API."),
        ),
        Alert(
            name="DependencyUnavailable", service=_service_template("dependency"),
            expr=unavailable, for_="2m",
            severity="warning", category="health", priority="P1", team="platform",
            summary="Dependency {{ $labels.dependency }} is unavailable.",
            description="{{ $labels.job }} has not reached {{ $labels.dependency }} for 2 minutes.",
            threshold="probe fails for 2m (PostgreSQL and Redis have their own alerts; "
            f"session-bound feeds: market open for > {num(stale)} s)",
            why="The feed, the Collector and SQLite are not on every request's path, so a short outage "
            f"is degraded service rather than downtime: a warning after 2 minutes. {gate_why} "
            f"{num(stale)} s. The Collector stays a warning here, as in the meta alerts.",
            checks=_DEP_CHECKS,
        ),
        Alert(
            name="DependencyCritical", service=_service_template("dependency"),
            expr=down_most,
            for_="2m", severity="critical", category="health", priority="P0", team="platform",
            summary="Dependency {{ $labels.dependency }} has been down most of the last 10 minutes.",
            description="{{ $labels.dependency }} answered only {{ $value | humanizePercentage }} of probes from "
            f"{{{{ $labels.job }}}} over the last 10 minutes (threshold {pct(critical)}).",
            threshold=f"availability < {pct(critical)} over 10m, for 2m (not the Collector; "
            "session-bound feeds: market open for > 10m)",
            why="Down for more than half of 10 minutes, or flapping, has outlasted any restart or failover: "
            f"a person must act. Catches flapping that the == 0 alerts miss. {gate_why} the 10-minute "
            "window, so the window never reads the closed hours. Not the Collector "
            f"({', '.join(_MONITORING)}): losing telemetry is not an outage of the service, and the "
            "Collector's own alerts (MonitoringTargetDown, TelemetryExportFailing) are warnings; "
            "DependencyUnavailable warns for it here too.",
            checks=_DEP_CHECKS,
        ),
        Alert(
            name="ApiTargetFlapping",
            expr=f"avg_over_time({up}[10m]) < {num(t.target_availability_critical)}\n"
            f"and changes({up}[10m]) >= 4",
            for_="1m", severity="critical", category="health", priority="P0", team="platform",
            link_labels=("job", "instance"),
            summary="{{ $labels.instance }} keeps going down: a crash loop.",
            description="Prometheus scraped {{ $labels.instance }} only {{ $value | humanizePercentage }} of the time "
            f"over the last 10 minutes, in several outages (threshold {pct(t.target_availability_critical)}).",
            threshold=f"up over 10m < {pct(t.target_availability_critical)}, in ≥ 2 outages, for 1m",
            why="A crash loop whose outages are shorter than ApiTargetDown's 2-minute `for` never fires it, "
            "and refused connections are never recorded as 5xx, so the error-rate alerts are blind "
            f"too: the instance is down half the time and nothing pages. Availability over 10 minutes "
            f"below {pct(t.target_availability_critical)} is down for over "
            f"{num(round(10 * (1 - t.target_availability_critical), 1))} minutes of 10, which no "
            "deploy restart comes near; requiring two outages (four changes of `up`) leaves one long "
            "outage to ApiTargetDown, and keeps this one from firing on after it recovers. Down half "
            "the time crosses the bar 5 minutes into the loop; `for: 1m` only rides out the "
            "evaluation that crosses it. Every instance is judged on its own: one crash-looping "
            "replica fails its share of requests.",
            checks=("The process logs just before each exit: traceback, OOM kill (`dmesg | grep -i oom`), failing start-up check?",
                    "The supervisor's restart count (systemd, the container runtime) and the last deploy: roll back.",
                    "Start-up dependencies: PostgreSQL and Redis reachable, configuration valid."),
        ),
        Alert(
            name="ApiTargetDown", expr=f"{q.sel('up')} == 0", for_="2m", severity="critical", category="health", priority="P0", team="platform",
            link_labels=("job", "instance"),
            summary="Prometheus cannot scrape {{ $labels.instance }}.",
            description="The scrape of {{ $labels.job }} at {{ $labels.instance }} has failed for 2 minutes: the "
            "API is down or /metrics is broken.",
            threshold="up == 0 for 2m",
            why="Eight failed 15 s scrapes: the process is down or hung (a slow but alive API still "
            "answers /metrics). That instance's own alerts go blind with it, so Alertmanager "
            "inhibits them (equal job and instance); the job-level alerts still speak for the "
            "replicas that are up.",
            checks=("`curl -sf http://<instance>/metrics | head`: down, hung, or slow?",
             "The process/container status and its last log lines.",
             "Prometheus's targets page (`/targets`) for the scrape error."),
        ),
        Alert(
            name="ApiJobDown", expr=f"max by (job) ({q.sel('up')}) == 0", for_="2m", severity="critical",
            category="health", priority="P0", team="platform",
            summary="Every instance of {{ $labels.job }} is down.",
            description="Prometheus has scraped no instance of {{ $labels.job }} for 2 minutes: the API is down.",
            threshold="max(up) == 0 over the job for 2m",
            why="The whole job is down: every API, business and SLO alert of the job is blind or a "
            "symptom, so Alertmanager inhibits them on equal job. ApiTargetDown of one instance "
            "inhibits only that instance's alerts, because the others still serve.",
            checks=("The deployment: all replicas crashed (a bad release?) or the network to them gone?",
                    "The process/container status and their last log lines.",
                    "Prometheus's targets page (`/targets`) for the scrape errors."),
        ),
        _down(q, "RedisDown", "redis", "Redis", "redis"),
        _down(q, "PostgreSQLDown", "postgresql", "PostgreSQL", "postgresql"),
    )
