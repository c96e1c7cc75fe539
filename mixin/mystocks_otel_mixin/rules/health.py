"""Health: the API's own target, the dependencies it probes, its components."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, num, pct
from mystocks_otel_mixin.lib.rulekit import Alert

_AVAIL = "mystocks_health_dependency_availability"
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
        name=name, expr=f"min by (job, dependency) ({avail}) == 0", for_="1m",
        severity="critical", category="health", priority="P0", team="platform", service=service,
        summary=f"{what} is unreachable from the API.",
        description=f"The health probe of {{{{ $labels.job }}}} has not reached {what} for over a minute.",
        threshold="probe fails for 1m",
        why=f"{what} is on the request path of nearly every call: without it the API fails or serves "
        "stale data. Four failed 15 s probes rule out one lost packet.",
        checks=_DEP_CHECKS,
    )


def records(cfg: MixinConfig) -> None:
    return None


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q, t = PromQL(cfg.app_job), cfg.thresholds
    critical = t.dependency_availability_critical
    _OTHER = q.sel(_AVAIL, 'dependency!~"postgresql|redis"')
    return (
        Alert(
            name="ComponentUnhealthy", service=_service_template("component"),
            expr=f"min by (job, component) ({q.sel('mystocks_health_component_status')}) == 0", for_="2m",
            severity="warning", category="health", priority="P1", team="platform",
            summary="Component {{ $labels.component }} is unhealthy.",
            description="The health check of {{ $labels.component }} in {{ $labels.job }} has failed for 2 minutes.",
            threshold="status 0 for 2m",
            why="Eight failed 15 s probes are no blip. A warning, because the specific alerts (database, "
            "cache, market data) say how bad it is and page when it is.",
            checks=("`GET /metrics/health` and the component's log lines.",
             "Which alerts fire for the same component (DatabaseConnectionPoolExhausted, RedisDown ...).",
             "Restart only the component's worker if the check is stuck, not the whole API."),
        ),
        Alert(
            name="DependencyUnavailable", service=_service_template("dependency"),
            expr=f'min by (job, dependency) ({_OTHER}) == 0', for_="2m",
            severity="warning", category="health", priority="P1", team="platform",
            summary="Dependency {{ $labels.dependency }} is unavailable.",
            description="{{ $labels.job }} has not reached {{ $labels.dependency }} for 2 minutes.",
            threshold="probe fails for 2m (PostgreSQL and Redis have their own alerts)",
            why="The feed, the Collector and SQLite are not on every request's path, so a short outage "
            "is degraded service rather than downtime: a warning after 2 minutes.",
            checks=_DEP_CHECKS,
        ),
        Alert(
            name="DependencyCritical", service=_service_template("dependency"),
            expr=f'avg by (job, dependency) (avg_over_time({_OTHER}[10m])) < {num(critical)}',
            for_="2m", severity="critical", category="health", priority="P0", team="platform",
            summary="Dependency {{ $labels.dependency }} has been down most of the last 10 minutes.",
            description="{{ $labels.dependency }} answered only {{ $value | humanizePercentage }} of probes from "
            f"{{{{ $labels.job }}}} over the last 10 minutes (threshold {pct(critical)}).",
            threshold=f"availability < {pct(critical)} over 10m, for 2m",
            why="Down for more than half of 10 minutes, or flapping, has outlasted any restart or failover: "
            "a person must act. Catches flapping that the == 0 alerts miss.",
            checks=_DEP_CHECKS,
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
