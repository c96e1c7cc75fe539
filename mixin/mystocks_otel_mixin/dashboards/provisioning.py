"""Grafana provisioning files: the datasources and the file provider of the dashboards.

Datasources: Prometheus (the default: 15 days of raw samples; its exemplars' ``trace_id``
opens the trace in Jaeger), VictoriaMetrics (the long-term store: a year of the
recording-rule series, docs/LONG_TERM_STORE.md), Jaeger (the trace store), VictoriaLogs (the
log store, through its Grafana plugin ``victoriametrics-logs-datasource``, which compose
pre-installs; a record's ``trace_id`` opens its trace), and Loki only when a Loki URL is given
to ``mystocks-otel render`` (``cfg.loki_url``): a datasource with nothing behind it only fails
every query sent to it.
"""

from __future__ import annotations

from mystocks_otel_mixin import config
from mystocks_otel_mixin.lib.rulekit import header

#: Where docker-compose mounts ``dashboards/`` inside the Grafana container.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
#: Fixed datasource uid: provisioned once, so links and exported dashboards stay valid.
PROMETHEUS_UID = "prometheus"
LTS_NAME, LTS_UID = "VictoriaMetrics", "victoriametrics"
LTS_URL = "http://victoriametrics:8428"
LOKI_UID = "loki"
JAEGER_UID, JAEGER_URL = "jaeger", "http://jaeger:16686"
LOGS_UID, LOGS_URL = "victorialogs", "http://victorialogs:9428"
#: Grafana's plugin id of VictoriaLogs' datasource (compose: GF_PLUGINS_PREINSTALL).
LOGS_PLUGIN = "victoriametrics-logs-datasource"
#: The exemplar label that carries the trace id (mystocks_otel's OpenMetrics exposition).
EXEMPLAR_TRACE_LABEL = "trace_id"

_HEADER = header(__name__)

_DATASOURCES_YML = _HEADER + f"""\
apiVersion: 1

datasources:
  - name: Prometheus
    type: prometheus
    uid: {PROMETHEUS_UID}
    access: proxy
    url: http://prometheus:9090
    isDefault: true
    editable: false
    jsonData:
      # Matches the scrape interval, so $__rate_interval is at least 4x it.
      timeInterval: 15s
      httpMethod: POST
      # An exemplar on a latency panel opens its trace in the trace store.
      exemplarTraceIdDestinations:
        - name: {EXEMPLAR_TRACE_LABEL}
          datasourceUid: {JAEGER_UID}

  # The long-term store: Prometheus remote-writes its recording-rule series here
  # (prometheus/prometheus.yml), kept a year. It answers Prometheus' query API.
  - name: {LTS_NAME}
    type: prometheus
    uid: {LTS_UID}
    access: proxy
    url: {LTS_URL}
    isDefault: false
    editable: false
    jsonData:
      # The rule evaluation interval: the recorded series' sample spacing.
      timeInterval: 15s
      httpMethod: POST

  # The trace store (Jaeger v2, fed by the Collector): where exemplars and log lines lead.
  - name: Jaeger
    type: jaeger
    uid: {JAEGER_UID}
    access: proxy
    url: {JAEGER_URL}
    isDefault: false
    editable: false

  # The log store (VictoriaLogs, fed by the Collector over OTLP). Every record logged in a
  # request carries its trace_id: the derived field links it to the trace.
  - name: VictoriaLogs
    type: {LOGS_PLUGIN}
    uid: {LOGS_UID}
    access: proxy
    url: {LOGS_URL}
    isDefault: false
    editable: false
    jsonData:
      derivedFields:
        - name: trace_id
          matcherType: label
          matcherRegex: trace_id
          datasourceUid: {JAEGER_UID}
          url: "$${{__value.raw}}"
"""

_LOKI_YML = """
  # Logs, provisioned because `mystocks-otel render --loki-url` named a Loki. Never the default.
  - name: Loki
    type: loki
    uid: {uid}
    access: proxy
    url: {url}
    isDefault: false
    editable: false
"""

DASHBOARD_PROVIDER_YML = _HEADER + f"""\
apiVersion: 1

providers:
  - name: mystocks
    orgId: 1
    folder: MyStocks
    type: file
    disableDeletion: true
    # Generated from code: edits in the UI would be lost on the next render.
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: {GRAFANA_DASHBOARDS_PATH}
      # Only the JSON files; provisioning/ lives beside them.
      foldersFromFilesStructure: false
"""


def datasources(cfg: config.MixinConfig) -> str:
    if not cfg.loki_url:
        return _DATASOURCES_YML
    return _DATASOURCES_YML + _LOKI_YML.format(uid=LOKI_UID, url=cfg.loki_url)
