"""Meta: monitoring of the monitoring (Prometheus, Alertmanager, the Collector, the
instrumentation). The Watchdog stays the outermost check: when Prometheus or Alertmanager is
too broken to send any of these, the heartbeat receiver notices the Watchdog's silence."""

from __future__ import annotations

from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL
from mystocks_otel_mixin.lib.rulekit import Alert


def records(cfg: MixinConfig) -> None:
    return None


#: Counters that move only when a user request reached the API: evidence that HTTP metrics
#: should exist. (Health checks and /metrics are excluded from the HTTP metrics.)
REQUEST_EVIDENCE = (
    "mystocks_user_logins_total", "mystocks_trading_orders_total",
    "mystocks_user_watchlist_operations_total", "mystocks_user_portfolio_updates_total",
    "mystocks_websocket_connections_opened_total",
)


def _http_absent(q: PromQL) -> str:
    evidence = "\n  or\n".join(f"sum by (job, instance) (increase({q.sel(n)}[15m])) > 0"
                                for n in REQUEST_EVIDENCE)
    http = q.sel("http_server_request_duration_seconds_count")
    return f"(\n  {evidence}\n)\nunless on (job, instance) count by (job, instance) ({http})"


def _cluster_split(am: PromQL) -> str:
    """Alertmanagers that see fewer cluster members than Prometheus finds Alertmanagers up."""
    return (f"max_over_time({am.sel('alertmanager_cluster_members')}[5m])\n"
            f"< on (job) group_left ()\ncount by (job) ({am.sel('up')} == 1)")


def _stack_alert(**fields) -> Alert:
    """An alert on the monitoring stack itself: platform's, with no link to the app's job."""
    return Alert(category="meta", team="platform", link_labels=(), **fields)


def _monitoring(cfg: MixinConfig) -> tuple[Alert, ...]:
    prom, am, col = (PromQL(cfg.prometheus_job), PromQL(cfg.alertmanager_job), PromQL(cfg.collector_job))
    jobs = (cfg.prometheus_job, cfg.alertmanager_job, cfg.collector_job)
    # The Collector's counters gained ``_total`` in newer releases: match both spellings.
    failed = col.any_of("otelcol_exporter_send_failed_metric_points", "otelcol_exporter_send_failed_metric_points_total")
    refused = col.any_of("otelcol_receiver_refused_metric_points", "otelcol_receiver_refused_metric_points_total")
    monitoring = PromQL(matchers=f'job=~"{"|".join(jobs)}"')
    stack_checks = ("Prometheus `/targets`: the scrape error of the job.",
                    "The process or container: running, and its last log lines.",
                    "While Prometheus or Alertmanager is down the Watchdog heartbeat stops too: "
                    "the heartbeat service is the check of last resort.")
    return (
        _stack_alert(
            name="AlertmanagerNotificationsFailing",
            expr=f"sum by (job, instance, integration) ({am.rate('alertmanager_notifications_failed_total', '15m')}) * 60 > 0",
            for_="5m", severity="critical", priority="P1",
            summary="Alertmanager fails to send {{ $labels.integration }} notifications.",
            description="{{ $labels.instance }} failed {{ $value | humanize }} {{ $labels.integration }} "
            "notifications a minute over 15 minutes: those receivers hear of nothing.",
            threshold="any failed notification of an integration, sustained over 15m windows for 5m",
            why="A revoked Slack URL, an expired PagerDuty key or a dead SMTP relay fails silently "
            "for the people behind it; Alertmanager retries and counts each failure per "
            "integration. Critical, so that the other integrations (PagerDuty, Slack, e-mail) "
            "carry the news of the broken one. A 15-minute window keeps the retries of one "
            "notification continuously visible.",
            checks=("Alertmanager's log: `level=error ... notify` names the receiver and the HTTP status.",
                    "The secret file of the receiver (alerts/alertmanager/secrets/): rotated or revoked?",
                    "`amtool check-config` on the rendered config; send a test alert with `amtool alert add`."),
        ),
        _stack_alert(
            name="PrometheusRuleEvaluationFailures",
            expr=f"sum by (job, instance, rule_group) (increase({prom.sel('prometheus_rule_evaluation_failures_total')}[5m])) > 0",
            for_="5m", severity="critical", priority="P1",
            summary="Prometheus fails to evaluate rules of {{ $labels.rule_group }}.",
            description="{{ $value | humanize }} rule evaluations of {{ $labels.rule_group }} failed on "
            "{{ $labels.instance }} in 5 minutes: the alerts in that group cannot fire.",
            threshold="any failed evaluation for 5m",
            why="A failing rule (many-to-many match, duplicate series after a relabel) never fires, "
            "so the alerts it carries are blind without anyone noticing. Rules run every "
            "evaluation interval, so a real failure keeps counting.",
            checks=("Prometheus `/rules`: the failing rule shows its last error.",
                    "`promtool check rules alerts/rules/*.yml` and the last change to the rules.",
                    "Label changes in the scrape config that create duplicate series."),
        ),
        _stack_alert(
            name="PrometheusNotificationsDropped",
            expr=f"sum by (job, instance) ({prom.rate('prometheus_notifications_dropped_total')}) * 60 > 0",
            for_="5m", severity="critical", priority="P1",
            summary="Prometheus drops alert notifications.",
            description="{{ $labels.instance }} dropped {{ $value | humanize }} alert notifications a minute: "
            "alerts that fired never reached Alertmanager.",
            threshold="any dropped notification for 5m",
            why="Prometheus drops notifications when its queue to Alertmanager overflows or every "
            "Alertmanager refuses them: fired alerts are then lost. If no Alertmanager is reachable "
            "this alert cannot arrive either, which is what the Watchdog heartbeat is for; with a "
            "second Prometheus or Alertmanager it does.",
            checks=("Prometheus log: `Error sending alert` and the Alertmanager URL.",
                    "`prometheus_notifications_queue_length` against its capacity.",
                    "Alertmanager's health (`/-/healthy`) and the network between them."),
        ),
        _stack_alert(
            name="PrometheusAlertmanagerUnreachable",
            expr=f"sum by (job, instance, alertmanager) ({prom.rate('prometheus_notifications_errors_total')}) > 0\n"
            f"or\nmax by (job, instance) ({prom.sel('prometheus_notifications_alertmanagers_discovered')}) < 1",
            for_="5m", severity="critical", priority="P1",
            summary="Prometheus cannot reach an Alertmanager.",
            description="{{ $labels.instance }} fails to send to {{ with $labels.alertmanager }}{{ . }}{{ else }}any Alertmanager (none discovered){{ end }}.",
            threshold="send errors, or no Alertmanager discovered, for 5m",
            why="Alerts are evaluated but not delivered. With two Alertmanagers the other one carries "
            "this alert; with none, only the Watchdog heartbeat's silence tells.",
            checks=("Prometheus `/status` (Alertmanagers) and the `alerting:` section of its config.",
                    "Alertmanager running and listening (`curl <am>/-/ready`).",
                    "TLS/auth errors in the Prometheus log."),
        ),
        _stack_alert(
            name="AlertmanagerClusterSplit",
            expr=_cluster_split(am),
            for_="10m", severity="critical", priority="P1",
            summary="Alertmanager {{ $labels.instance }} is cut off from its cluster peers.",
            description="{{ $labels.instance }} sees {{ $value }} cluster members, fewer than the "
            "Alertmanagers Prometheus finds up: silences and notification logs are no longer shared, so a silenced alert pages again "
            "from the other side and every side sends its own notifications.",
            threshold="cluster members below the Alertmanagers up, over 5m windows, for 10m",
            why="Alertmanagers deduplicate and share silences by gossip. Split, each side notifies "
            "on its own: a silenced P0 keeps paging from the peer that never heard of the silence, "
            "and each incident is sent twice. Judged against the Alertmanagers Prometheus scrapes "
            "and finds up (the peers configured where it matters, without a number to keep in "
            "step): a peer that is simply down is MonitoringTargetDown's, not a split, and a "
            "single Alertmanager (one member of one) never fires. A peer failing as seen from "
            "one side lowers that side's member count, so a partition fires on every side. "
            "alertmanager_cluster_failed_peers is not read on its own: a peer replaced at a new "
            "address stays 'failed' for the reconnect timeout (6 h) while the cluster is whole. "
            "max_over_time over 5m and `for: 10m` ride over a rolling restart, when members "
            "leave and rejoin within a minute or two. Critical: duplicated and unsilenceable "
            "pages need the on-call's hands.",
            checks=("Each Alertmanager's `/#/status`: the cluster peers it sees, and `amtool cluster show`.",
                    "The gossip port (9094, TCP and UDP) between the peers: firewall, DNS of --cluster.peer.",
                    "Alertmanager logs: `memberlist` and `Failed to join` messages."),
        ),
        _stack_alert(
            name="PrometheusConfigReloadFailed",
            expr=f"max_over_time({prom.sel('prometheus_config_last_reload_successful')}[5m]) == 0",
            for_="10m", severity="critical", priority="P1",
            summary="Prometheus {{ $labels.instance }} failed to reload its configuration.",
            description="{{ $labels.instance }}'s last configuration reload failed: it keeps evaluating the "
            "old rules and scraping the old targets, and the change that was meant to apply did not.",
            threshold="last reload unsuccessful, over 5m windows, for 10m",
            why="A reload that fails (a rule file promtool would reject, an unreadable secret) "
            "leaves Prometheus running the previous configuration without a sound: the new "
            "alert, the fixed route or the new target silently does not exist. "
            "prometheus_config_last_reload_successful is 0 until a reload succeeds. "
            "max_over_time over 5m lets a broken reload fixed by the next one pass; `for: 10m` "
            "gives the person who made the change time to see it. Critical, as in the "
            "upstream Prometheus mixin: the alerting itself is not what people think it is.",
            checks=("Prometheus log: `Error reloading config` and the file and line.",
                    "`promtool check config prometheus.yml` and `promtool check rules` on the rule files.",
                    "Prometheus `/status` (last successful reload) and `/rules`: which rules are loaded."),
        ),
        _stack_alert(
            name="AlertmanagerConfigReloadFailed",
            expr=f"max_over_time({am.sel('alertmanager_config_last_reload_successful')}[5m]) == 0",
            for_="10m", severity="critical", priority="P1",
            summary="Alertmanager {{ $labels.instance }} failed to reload its configuration.",
            description="{{ $labels.instance }}'s last configuration reload failed: it routes with the old "
            "receivers, routes and inhibitions.",
            threshold="last reload unsuccessful, over 5m windows, for 10m",
            why="A rejected alertmanager.yml (a template error, a missing secret file) keeps the "
            "old routing tree: a new receiver or an on-call change never takes effect, and peers "
            "that did load it route differently. alertmanager_config_last_reload_successful is "
            "0 until a reload succeeds; per instance, so one peer with a bad file is named. "
            "Same windows as PrometheusConfigReloadFailed, critical as in the upstream "
            "Alertmanager mixin.",
            checks=("Alertmanager log: `Loading configuration file failed` and the reason.",
                    "`amtool check-config` on the rendered alertmanager.yml and its templates.",
                    "The secret files the config reads (alerts/alertmanager/secrets/): present and readable."),
        ),
        _stack_alert(
            name="OtelCollectorExportFailures",
            expr=f'sum by (job, instance, exporter) (rate({failed}[5m])) > 0',
            for_="10m", severity="warning", priority="P1",
            summary="The Collector fails to export metrics through {{ $labels.exporter }}.",
            description="{{ $labels.exporter }} on {{ $labels.instance }} fails to send {{ $value | humanize }} "
            "metric points/s: the long-term copy of the metrics has a hole.",
            threshold="any failed point for 10m",
            why="The Collector's exporters retry and then drop; the points are lost for the store "
            "behind it (VictoriaMetrics' year of raw data). Not a page: the app's own /metrics, "
            "which the alerts read, is unaffected.",
            checks=("Collector log: the exporter's error (connection refused, 4xx from the backend).",
                    "The backend behind the exporter: running, disk not full.",
                    "`otelcol_exporter_queue_size` against its capacity."),
        ),
        _stack_alert(
            name="OtelCollectorRefusedPoints",
            expr=f'sum by (job, instance, receiver) (rate({refused}[5m])) > 0',
            for_="10m", severity="warning", priority="P2",
            summary="The Collector refuses metric points on {{ $labels.receiver }}.",
            description="{{ $labels.receiver }} refuses {{ $value | humanize }} points/s: senders' data is lost.",
            threshold="any refused point for 10m",
            why="A receiver refuses points when the memory limiter or a full queue pushes back; the "
            "app's OTLP exporter then drops them after its retries.",
            checks=("Collector log: memory_limiter messages.",
                    "`otelcol_process_memory_rss` against the memory limiter's limit.",
                    "The sending app's `mystocks_telemetry_export_failures_total`."),
        ),
        _stack_alert(
            name="MonitoringTargetDown",
            expr=f"{monitoring.sel('up')} == 0",
            for_="5m", severity="warning", priority="P1",
            summary="Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
            description="The {{ $labels.job }} target {{ $labels.instance }} has been down for 5 minutes.",
            threshold="up == 0 for 5m",
            why="The monitoring stack itself: a dead Alertmanager peer or Collector loses "
            "redundancy or the long-term copy before it loses alerts. A warning, because the "
            "paths that page are covered by the alerts above and by the Watchdog.",
            checks=stack_checks,
        ),
        _stack_alert(
            name="MonitoringTargetAbsent",
            expr="\nor\n".join(f"absent({PromQL(job).sel('up')})" for job in jobs),
            for_="10m", severity="warning", priority="P2",
            summary="Prometheus has no target for {{ $labels.job }}.",
            description="No `up` series exists for job {{ $labels.job }}: the scrape config lost it.",
            threshold="no up series for 10m",
            why="MonitoringTargetDown needs an `up` series; a job dropped from the scrape config "
            "silently disables every meta alert that reads it. The job names come from "
            "MixinConfig (prometheus/prometheus.yml must use them).",
            checks=("`prometheus/prometheus.yml`: is the job there, under this name?",
                    "Prometheus `/targets` and `/service-discovery`.",
                    "`mystocks-otel render --prometheus-job/--alertmanager-job/--collector-job` if yours differ."),
        ),
    )


def alerts(cfg: MixinConfig) -> tuple[Alert, ...]:
    q = PromQL(cfg.app_job)
    overflow = q.rate("mystocks_telemetry_sanitized_attributes_total", "10m", 'reason="overflow"')
    return _monitoring(cfg) + (
        Alert(
            name="Watchdog", expr="vector(1)", for_="0m", severity="info", category="meta", priority="P3", team="platform",
            link_labels=(),
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
            name="ApiTargetAbsent", service="mystocks-api", expr=f"absent({q.sel('up')})", for_="5m", severity="critical", category="meta", priority="P1", team="platform",
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
            name="HttpMetricsAbsent", service="mystocks-api",
            expr=_http_absent(q),
            for_="15m", severity="warning", category="meta", priority="P2", team="platform",
            link_labels=("job", "instance"),
            summary="{{ $labels.instance }} serves requests but exports no HTTP metrics.",
            description="{{ $labels.instance }} recorded user activity (sign-ins, orders, WebSocket "
            "connections) over 15 minutes but no http_server_request_duration_seconds: the HTTP "
            "instrumentation is not running.",
            threshold="user activity but no HTTP series, per instance, for 15m",
            why="opentelemetry-instrument swallows a failing distro, leaving the app running "
            "uninstrumented: the API, latency and SLO alerts then see nothing. Health and metrics "
            "paths are excluded from the HTTP metrics, so an idle API (a restart at night) has no "
            "HTTP series and is fine; an instance whose handlers record sign-ins, orders or "
            "WebSocket connections but no HTTP request is not. Per instance, so one broken "
            "replica is seen beside a healthy one.",
            checks=("The API's start-up log: a traceback from the distro or configurator?",
             "`OTEL_SEMCONV_STABILITY_OPT_IN=http` and `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`.",
             "`curl /metrics | grep http_server` on the instance."),
        ),
        Alert(
            name="TelemetryMeasurementsDropped",
            expr=f"sum by (job, metric, reason) ({q.rate('mystocks_telemetry_dropped_measurements_total', '15m')}) * 60 > 0",
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
            name="TelemetryExportFailing",
            expr=f"sum by (job, instance, exporter) ({q.rate('mystocks_telemetry_export_failures_total', '10m')}) * 60 > 0",
            for_="10m", severity="warning", category="meta", priority="P2", team="platform",
            link_labels=("job", "instance"),
            summary="{{ $labels.instance }} cannot push metrics through {{ $labels.exporter }}.",
            description="{{ $labels.instance }} failed {{ $value | humanize }} {{ $labels.exporter }} exports a minute "
            "over 10 minutes: the Collector (and the store behind it) misses its metrics.",
            threshold="any failed export for 10m",
            why="A dead or refusing Collector never blocks requests (the exporter drops after its "
            "retries), so nothing else shows it. /metrics, which the alerts scrape, is unaffected: "
            "a warning.",
            checks=("`GET /metrics/health`: the exporter's last error.",
                    "The Collector: running, reachable at OTEL_EXPORTER_OTLP_ENDPOINT (OtelCollectorRefusedPoints?).",
                    "TLS and headers settings (OTEL_EXPORTER_OTLP_*)."),
        ),
        Alert(
            name="TelemetryCardinalityOverflow",
            expr=f'sum by (job, metric) ({overflow}) * 60\n> 0',
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
