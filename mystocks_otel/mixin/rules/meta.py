"""Meta: the alerting pipeline and the instrumentation themselves."""

from __future__ import annotations

from mystocks_otel.mixin import config as c
from mystocks_otel.mixin.config import MixinConfig
from mystocks_otel.mixin.lib.promql import PromQL, num, ratio
from mystocks_otel.mixin.lib.rulekit import Alert, Group, Record


def records(cfg: MixinConfig) -> None:
    return None


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q = PromQL(cfg.app_job)
    _OVERFLOW = q.sel("mystocks_telemetry_sanitized_attributes_total", 'reason="overflow"')
    return (
        Alert(
            name="Watchdog", expr="vector(1)", for_="0m", severity="info", category="meta", priority="P3", team="platform",
            summary="The alerting pipeline is alive.",
            description="Always firing. It is routed to the heartbeat (dead man's switch) receiver; when that "
            "receiver stops hearing it, Prometheus or Alertmanager is broken.",
            threshold="always",
            why="A dead man's switch: the absence of this alert is the alert.",
            checks=("The heartbeat service: when did it last hear from Alertmanager?",
             "Prometheus's `/rules` and Alertmanager's `/#/alerts` pages.",
             "The Alertmanager route for `heartbeat=\"true\"`."),
            extra_labels={"heartbeat": "true"},
        ),
        Alert(
            name="ApiTargetAbsent", expr=f"absent({q.sel('up')})", for_="5m", severity="critical", category="meta", priority="P1", team="platform",
            summary="Prometheus has no target for the MyStocks API.",
            description="No `up` series exists for job {{ $labels.job }}: service discovery or the scrape config "
            "lost the API, and every API alert is blind.",
            threshold="no up series for 5m",
            why="ApiTargetDown needs an `up` series; when the target itself vanishes only absent() notices. "
            "5 minutes covers a Prometheus reload.",
            checks=("`prometheus/prometheus.yml`: is the job still there and named mystocks-api?",
             "Prometheus's `/targets` and `/service-discovery` pages.",
             "A recent change to the deployment's labels or DNS name."),
        ),
        Alert(
            name="HttpMetricsAbsent",
            expr=f"absent({q.sel('http_server_request_duration_seconds_count')})\nand on () (count({q.sel('up')} == 1) > 0)",
            for_="15m", severity="warning", category="meta", priority="P2", team="platform",
            summary="The API is scraped but exports no HTTP metrics.",
            description="{{ $labels.job }} is up but has exported no http_server_request_duration_seconds for 15 "
            "minutes: the HTTP instrumentation is not running.",
            threshold="up, but no HTTP series for 15m",
            why="opentelemetry-instrument swallows a failing distro, leaving the app running "
            "uninstrumented: the API, latency and SLO alerts then see nothing. 15 minutes: health "
            "checks alone make requests within that time.",
            checks=("The API's start-up log: a traceback from the distro or configurator?",
             "`OTEL_SEMCONV_STABILITY_OPT_IN=http` and `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`.",
             "`curl /metrics | grep http_server` on the instance."),
        ),
        Alert(
            name="TelemetryMeasurementsDropped",
            expr=f"sum by (job, metric, reason) (rate({q.sel('mystocks_telemetry_dropped_measurements_total')}[15m])) * 60 > 0",
            for_="15m", severity="info", category="meta", priority="P3", team="platform",
            summary="Measurements of {{ $labels.metric }} are being dropped.",
            description="{{ $labels.metric }} drops {{ $value | humanize }} measurements/min ({{ $labels.reason }}).",
            threshold="any drop for 15m",
            why="A bug in the instrumentation, not an incident: info, for the dashboard and the next "
            "working day.",
            checks=("`reason`: nan/negative means a caller passes bad values; error means a recorder raised.",
             "The code that records the metric named in the `metric` label.",
             "The API log for the recorder's exception."),
        ),
        Alert(
            name="TelemetryCardinalityOverflow",
            expr=f'sum by (job, metric) (rate({_OVERFLOW}[10m])) * 60\n> 0',
            for_="10m", severity="warning", category="meta", priority="P2", team="platform",
            summary="{{ $labels.metric }} exceeds its cardinality limit.",
            description="{{ $labels.metric }} records into its overflow series ({{ $value | humanize }} "
            "attributes/min): its per-label panels and alerts are now incomplete.",
            threshold="any overflow for 10m",
            why="Past the limit the SDK merges new series into one overflow series, so dashboards silently "
            "lie. Some label took unbounded values.",
            checks=("Which label grows: `count by (__name__) ({__name__=~\".+\"})` and the metric's labels.",
             "A route or table label that receives raw paths/IDs instead of templates.",
             "Bound the label in the catalog (values=...) or raise the limit deliberately."),
        ),
    )
