"""The Collector: its configs hang together, agree with compose/Prometheus, and really run."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import yaml
from support import free_port, wait_until

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes

import live_stack

SECTIONS = {"receivers": "receivers", "processors": "processors", "exporters": "exporters"}
#: Defined in the base but left out of compose's pipeline: compose's VictoriaMetrics is the
#: long-term store of aggregates only (docs/LONG_TERM_STORE.md).
UNUSED_IN_COMPOSE = {"otlp_http/victoriametrics"}


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("which", ["base", "merged"])
def test_pipelines_reference_only_defined_components(collector, which):
    config = getattr(collector, which)
    service = config["service"]
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for name, pipeline in service["pipelines"].items():
        for section in SECTIONS:
            assert pipeline.get(section) or section == "processors", f"{name}: no {section}"
            for component in pipeline.get(section, []):
                assert component in config.get(section, {}), f"{name} uses undefined {component}"
                used[section].add(component)
        processors = pipeline.get("processors", [])
        # memory_limiter must see data before anything buffers it; batch goes last.
        assert processors[:1] == ["memory_limiter"], f"{name}: {processors}"
        assert processors[-1] == "batch", f"{name}: {processors}"
    allowed_unused = UNUSED_IN_COMPOSE if which == "merged" else set()
    for section in SECTIONS:  # a defined but unused component is usually a typo
        assert set(config.get(section, {})) - allowed_unused == used[section], section
    assert set(service["extensions"]) == set(config["extensions"])


def test_base_config_uses_core_components_only(collector):
    # The base runs on any Collector distribution; the contrib extras belong in the overlay.
    core = {"otlp", "batch", "memory_limiter", "debug", "otlp_grpc", "otlp_http", "zpages",
            "forward"}
    for section in ("receivers", "processors", "exporters", "extensions", "connectors"):
        for component in collector.base.get(section, {}):
            assert component.split("/")[0] in core, f"{component} is not a core component"
    assert {"health_check"} <= set(collector.overlay["extensions"])
    assert {"resource"} <= set(collector.overlay["processors"])
    assert {"prometheus"} <= set(collector.overlay["exporters"])


def test_fan_out_to_prometheus_and_victoriametrics(collector, compose):
    exporters = collector.base["exporters"]
    metrics = collector.base["service"]["pipelines"]["metrics"]["exporters"]
    prom = exporters["otlp_http/prometheus"]["endpoint"]
    vm = exporters["otlp_http/victoriametrics"]["endpoint"]
    assert {"otlp_http/prometheus", "otlp_http/victoriametrics"} <= set(metrics)
    # otlp_http appends /v1/metrics: Prometheus' and VictoriaMetrics' OTLP paths.
    assert prom == "http://prometheus:9090/api/v1/otlp"
    assert vm == "http://victoriametrics:8428/opentelemetry"
    assert "--web.enable-otlp-receiver" in compose["services"]["prometheus"]["command"]
    assert "-httpListenAddr=:8428" in compose["services"]["victoriametrics"]["command"]


def test_traces_and_logs_go_to_the_stores_compose_runs(collector, compose, root):
    """Spans to Jaeger's OTLP receiver, log records to VictoriaLogs' OTLP path, each through
    memory_limiter and batch, with a bounded queue and bounded retries; the hosts and ports are
    compose's services, and Grafana's datasources read the same stores."""
    exporters, pipelines = collector.merged["exporters"], collector.merged["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp_http/jaeger"]
    assert pipelines["logs"]["exporters"] == ["otlp_http/victorialogs"]
    assert exporters["otlp_http/jaeger"]["endpoint"] == "http://jaeger:4318"
    assert exporters["otlp_http/victorialogs"]["logs_endpoint"] == \
        "http://victorialogs:9428/insert/opentelemetry/v1/logs"
    for name in ("otlp_http/jaeger", "otlp_http/victorialogs"):
        queue = exporters[name]["sending_queue"]
        assert queue["enabled"] and 0 < queue["queue_size"] <= 1000, name
        assert exporters[name]["retry_on_failure"]["max_elapsed_time"] == "60s", name
    services = compose["services"]
    assert "--config=/etc/jaeger/jaeger.yaml" in services["jaeger"]["command"]
    assert "-httpListenAddr=:9428" in services["victorialogs"]["command"]
    assert {"jaeger", "victorialogs"} <= set(services["otel-collector"]["depends_on"])
    jaeger = yaml.safe_load((root / "jaeger" / "jaeger.yaml").read_text())
    receiver = jaeger["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert receiver.endswith(":-0.0.0.0:4318}")
    query = jaeger["extensions"]["jaeger_query"]["http"]["endpoint"]
    assert query.endswith(":-0.0.0.0:16686}") and "127.0.0.1:16686:16686" in services["jaeger"]["ports"]
    datasources = {d["uid"]: d for d in yaml.safe_load(
        (root / "dashboards" / "provisioning" / "datasources" / "datasources.yml").read_text())["datasources"]}
    assert datasources["jaeger"]["url"] == "http://jaeger:16686"
    assert datasources["victorialogs"]["url"] == "http://victorialogs:9428"
    assert datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger"}]
    grafana_env = services["grafana"]["environment"]
    assert datasources["victorialogs"]["type"] in grafana_env["GF_PLUGINS_PREINSTALL"].split(",")


def test_compose_keeps_the_raw_copy_out_of_the_long_term_store(collector, compose):
    """compose's VictoriaMetrics keeps a year of aggregates only (Prometheus' remote_write);
    the Collector's raw copy goes to Prometheus, which keeps it 15 days."""
    metrics = collector.merged["service"]["pipelines"]["metrics"]["exporters"]
    assert "otlp_http/prometheus" in metrics
    assert not UNUSED_IN_COMPOSE & set(metrics)
    assert "victoriametrics" not in compose["services"]["otel-collector"].get("depends_on", {})


def test_ports_agree_with_compose_and_prometheus(collector, compose, prometheus_config):
    services = compose["services"]
    otlp = collector.merged["receivers"]["otlp"]["protocols"]
    assert (_port(otlp["grpc"]["endpoint"]), _port(otlp["http"]["endpoint"])) == (4317, 4318)
    published = {int(p.rsplit(":", 1)[1]) for p in services["otel-collector"]["ports"]}
    assert {4317, 4318} <= published

    telemetry = collector.merged["service"]["telemetry"]["metrics"]["readers"][0]
    own = telemetry["pull"]["exporter"]["prometheus"]
    exporter = _port(collector.merged["exporters"]["prometheus"]["endpoint"])
    assert (own["host"], int(own["port"]), exporter) == ("0.0.0.0", 8888, 8889)
    jobs = {j["job_name"]: j for j in prometheus_config["scrape_configs"]}
    targets = {t for sc in jobs["otel-collector"]["static_configs"] for t in sc["targets"]}
    assert targets == {"otel-collector:8888", "otel-collector:8889"}

    health = _port(collector.merged["extensions"]["health_check"]["endpoint"])
    assert health == 13133
    probe = " ".join(services["collector-health"]["healthcheck"]["test"])
    assert f"http://otel-collector:{health}/" in probe

    # The app pushes to the collector's OTLP/HTTP port.
    app_env = services["app"]["environment"]
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


# -- the build's manifest and lock (collector/builder-config.yaml, collector/dist/) ------

CORE = "go.opentelemetry.io/collector/"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib/"
#: What collector/build.sh must compile in: every component the configs use, and tail
#: sampling (for traces) even though no config uses it yet.
CONTRIB_COMPONENTS = {"processors": {"tail_sampling", "resource"},
                      "exporters": {"prometheus"}, "extensions": {"health_check"}}


def _manifest(root) -> tuple[dict, str]:
    """builder-config.yaml, and the builder version from its '# ocb:' line."""
    text = (root / "collector" / "builder-config.yaml").read_text()
    ocb = re.search(r"^# ocb: go\.opentelemetry\.io/collector/cmd/builder (v\S+)$", text, re.M)
    assert ocb, "builder-config.yaml names no builder version"
    return yaml.safe_load(text), ocb.group(1)


def _pins(manifest: dict) -> dict[str, str]:
    """{module path: version} of every gomod in the manifest."""
    entries = [m for section in ("providers", "receivers", "processors", "exporters",
                                 "extensions", "connectors") for m in manifest.get(section, [])]
    assert entries
    pins = {}
    for entry in entries:
        path, version = entry["gomod"].split(" ")
        pins[path] = version
    return pins


def _lock_requires(root) -> dict[str, str]:
    text = (root / "collector" / "dist" / "go.mod").read_text()
    return dict(re.findall(r"^\t(\S+) (v\S+)(?: // indirect)?$", text, re.M))


def test_manifest_pins_one_matched_release(root):
    manifest, ocb = _manifest(root)
    pins = _pins(manifest)
    semver = re.compile(r"^v\d+\.\d+\.\d+$")
    assert all(semver.match(v) for v in pins.values()), pins  # exact versions only
    beta = {v for p, v in pins.items() if p.startswith(CORE) and v.startswith("v0.")}
    stable = {v for p, v in pins.items() if p.startswith(CORE) and not v.startswith("v0.")}
    contrib = {v for p, v in pins.items() if p.startswith(CONTRIB)}
    assert beta == {ocb}, "core components move with the builder"
    assert len(stable) == 1 and len(contrib) == 1, (stable, contrib)
    # contrib vX.Y.* is built against core vX.Y.0
    assert contrib.pop().split(".")[:2] == ocb.split(".")[:2]
    assert manifest["dist"]["version"].startswith(ocb[1:])
    assert {p.rsplit("/", 1)[1] for p in pins if p.startswith(CONTRIB)} == {
        "tailsamplingprocessor", "resourceprocessor", "prometheusexporter",
        "healthcheckextension"}


def test_lock_matches_the_manifest(root):
    """collector/dist/go.{mod,sum} is the builder's go mod tidy of this very manifest."""
    manifest, ocb = _manifest(root)
    requires = _lock_requires(root)
    expected = {**_pins(manifest), "go.opentelemetry.io/collector/otelcol": ocb}
    assert {p: requires.get(p) for p in expected} == expected
    go_sum = (root / "collector" / "dist" / "go.sum").read_text()
    hashed = set(re.findall(r"^(\S+ v\S+?)(?:/go\.mod)? h1:\S+=$", go_sum, re.M))
    missing = {f"{p} {v}" for p, v in requires.items()} - hashed
    assert not missing, f"go.sum lacks hashes for {sorted(missing)[:5]}"


def copy_collector(root, tmp_path) -> Path:
    """collector/ and the build's shared part, scripts/go-lib.sh, as a checkout has them."""
    copy = tmp_path / "collector"
    shutil.copytree(root / "collector", copy)
    (tmp_path / "scripts").mkdir()
    shutil.copy(root / "scripts" / "go-lib.sh", tmp_path / "scripts")
    return copy


def test_a_pin_change_means_another_binary(root, tmp_path):
    """The cached binary is named by a hash of manifest + lock: a bump never reuses it."""
    def path_for(directory):
        proc = subprocess.run([str(directory / "build.sh"), "--path"], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    copy = copy_collector(root, tmp_path)
    assert path_for(copy) == path_for(root / "collector")  # content, not location
    seen = {path_for(copy)}
    for name, old, new in [("builder-config.yaml", "resourceprocessor v0.", "resourceprocessor v9."),
                           ("dist/go.sum", " h1:", " h1:X")]:
        target = copy / name
        target.write_text(target.read_text().replace(old, new, 1))
        seen.add(path_for(copy))
    assert len(seen) == 3, seen


# -- the real collector -----------------------------------------------------------------


def _validate(otelcol: str, *configs, env=None) -> subprocess.CompletedProcess:
    args = [otelcol, "validate", *(f"--config={c}" for c in configs)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_build_is_cached(otelcol, root):
    before = os.stat(otelcol).st_mtime_ns
    started = time.monotonic()
    proc = subprocess.run([str(root / "collector" / "build.sh")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == otelcol
    assert os.stat(otelcol).st_mtime_ns == before
    assert time.monotonic() - started < 5, "a cached build must not touch the network"
    assert Path(otelcol).name.startswith("otelcol-")  # keyed by the pins


def test_a_stale_lock_fails_the_build(otelcol, root, tmp_path):
    """A pin bumped in the manifest without --update-lock is an error, not a silent build."""
    copy = copy_collector(root, tmp_path)
    manifest = copy / "builder-config.yaml"
    manifest.write_text(manifest.read_text().replace("resourceprocessor v0.", "resourceprocessor v9.", 1))
    proc = subprocess.run([str(copy / "build.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "resourceprocessor v9." in proc.stderr and "--update-lock" in proc.stderr, proc.stderr


def test_real_collector_validates_the_base_config(otelcol, root):
    proc = _validate(otelcol, root / "collector" / "otelcol.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_real_collector_validates_the_contrib_overlay(otelcol, root):
    """Base + overlay, as docker-compose runs them: validated by the binary, not by shape."""
    proc = _validate(otelcol, root / "collector" / "otelcol.yaml",
                     root / "collector" / "overlay-contrib.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_components_include_contrib_and_everything_the_configs_use(otelcol, root, collector):
    proc = subprocess.run([otelcol, "components"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = yaml.safe_load(proc.stdout)
    names = {section: {c["name"] for c in listed.get(section) or []}
             for section in ("receivers", "processors", "exporters", "extensions", "connectors")}
    for section, wanted in CONTRIB_COMPONENTS.items():
        assert wanted <= names[section], (section, names[section])
    for section in names:
        used = {c.split("/")[0] for c in collector.merged.get(section, {})}
        assert used <= names[section], (section, used - names[section])
    # Built from the committed pins: every component's module is a manifest gomod.
    manifest, ocb = _manifest(root)
    pinned = {f"{p} {v}" for p, v in _pins(manifest).items()}
    modules = {c["module"] for section in names for c in listed.get(section) or []}
    assert modules <= pinned, modules - pinned
    assert listed["buildinfo"]["version"] == manifest["dist"]["version"]


def test_real_collector_validates_a_tail_sampling_pipeline(otelcol, root, tmp_path):
    traces = tmp_path / "tail-sampling.yaml"
    traces.write_text(yaml.safe_dump({
        "processors": {"tail_sampling": {"decision_wait": "10s", "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}}]}},
        "service": {"pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["memory_limiter", "tail_sampling", "batch"],
            "exporters": ["debug"]}}},
    }))
    proc = _validate(otelcol, root / "collector" / "otelcol.yaml", traces)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("broken, expected", [
    # an unknown component type
    ("exporters:\n  nonexistent: {}\n", "nonexistent"),
    # a pipeline naming an exporter that is not defined
    ("service:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n"
     "      exporters: [otlp_http/missing]\n", "otlp_http/missing"),
])
def test_real_collector_rejects_a_broken_config(otelcol, root, tmp_path, broken, expected):
    overlay = tmp_path / "broken.yaml"
    overlay.write_text(broken)
    proc = _validate(otelcol, root / "collector" / "otelcol.yaml", overlay)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr


def test_real_collector_rejects_a_broken_contrib_setting(otelcol, root, tmp_path):
    """A contrib component's own checks run too (no structural test could see this)."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("processors:\n  resource:\n    attributes:\n"
                      "      - key: service.namespace\n        action: explode\n")
    proc = _validate(otelcol, root / "collector" / "otelcol.yaml",
                     root / "collector" / "overlay-contrib.yaml", broken)
    assert proc.returncode != 0
    assert 'unsupported action "explode"' in proc.stdout + proc.stderr


class _Backend(BaseHTTPRequestHandler):
    """Stands in for Prometheus' and VictoriaMetrics' OTLP/HTTP receivers."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":  # otlp_http's default
            body = gzip.decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _request(body: bytes):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    return ExportMetricsServiceRequest.FromString(body)


def _resources(body: bytes) -> list[dict[str, str]]:
    return [{a.key: a.value.string_value for a in rm.resource.attributes}
            for rm in _request(body).resource_metrics]


def _points(body: bytes) -> dict[str, tuple[str, float]]:
    request = _request(body)
    out = {}
    for rm in request.resource_metrics:
        service = next(a.value.string_value for a in rm.resource.attributes
                       if a.key == "service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = (service, sum(getattr(p, p.WhichOneof("value"))
                                                  for p in metric.sum.data_points))
    return out


@pytest.fixture
def otlp_sink():
    """A local OTLP/HTTP server standing in for a backend; records (path, request body)."""
    backend = ThreadingHTTPServer(("127.0.0.1", 0), type("B", (_Backend,), {"received": []}))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{backend.server_port}",
                          received=backend.RequestHandlerClass.received)
    backend.shutdown()
    backend.server_close()


@pytest.fixture
def start_collector(otelcol, root, tmp_path):
    """Starts the built collector on free loopback ports with the given backend URLs;
    with overlay=True, collector/overlay-contrib.yaml on top, as docker-compose runs it.
    Through the process harness: ready when its OTLP/HTTP port listens, stopped at the end
    (even when the test failed), its log in ``tmp_path/servers/logs``."""
    with Processes(tmp_path / "servers") as procs:

        def start(prometheus_url: str, victoriametrics_url: str, overlay: bool = False,
                  traces_url: str | None = None, logs_url: str | None = None) -> dict[str, int]:
            ports = {name: free_port() for name in ("grpc", "http", "zpages", "telemetry",
                                                    "health", "prometheus")}
            env = {
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
                "OTELCOL_ZPAGES_ENDPOINT": f"127.0.0.1:{ports['zpages']}",
                "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
                "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
                "OTELCOL_PROMETHEUS_OTLP_ENDPOINT": f"{prometheus_url}/api/v1/otlp",
                "OTELCOL_VICTORIAMETRICS_OTLP_ENDPOINT": f"{victoriametrics_url}/opentelemetry",
                "OTELCOL_BATCH_TIMEOUT": "200ms",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
                "OTELCOL_PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{ports['prometheus']}",
                "OTELCOL_JAEGER_OTLP_ENDPOINT": traces_url or prometheus_url,
                "OTELCOL_VICTORIALOGS_OTLP_ENDPOINT": f"{logs_url or prometheus_url}/insert/opentelemetry",
            }
            configs = ["otelcol.yaml", "overlay-contrib.yaml"] if overlay else ["otelcol.yaml"]
            procs.start(processes.otel_collector(
                otelcol, [root / "collector" / c for c in configs], env, ports["http"],
                [p for name, p in ports.items() if name != "http"],
                name=f"otel-collector-{len(procs.children) + 1}"))
            return ports

        yield start


@pytest.fixture
def victoriametrics(victoriametrics_binary, tmp_path):
    """A real VictoriaMetrics (Debian trixie's package) on a free loopback port."""
    with live_stack.victoriametrics(victoriametrics_binary, tmp_path / "vm",
                                    "-opentelemetry.usePrometheusNaming") as url:
        yield url


def _send_probe(otlp_http_port: int) -> None:
    """Counts 3 + 4 on mystocks_e2e_probe through the OpenTelemetry Python SDK."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    endpoint = f"http://127.0.0.1:{otlp_http_port}/v1/metrics"
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, timeout=5),
                                           export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "mystocks-e2e"}))
    counter = provider.get_meter("e2e").create_counter("mystocks_e2e_probe", unit="1")
    counter.add(3, {"route": "/quotes"})
    counter.add(4, {"route": "/orders"})
    try:
        assert provider.force_flush(10_000), "the SDK could not export to the collector"
    finally:
        provider.shutdown()


@pytest.mark.live
def test_metrics_flow_from_the_sdk_through_the_collector_to_both_backends(start_collector,
                                                                         otlp_sink):
    ports = start_collector(otlp_sink.url, otlp_sink.url)
    _send_probe(ports["http"])

    received = otlp_sink.received
    expected = {"/api/v1/otlp/v1/metrics", "/opentelemetry/v1/metrics"}
    wait_until(lambda: {p for p, _ in received} >= expected, 15, "both backends to receive data")
    assert {p for p, _ in received} == expected
    for path in expected:
        merged = {}
        for _, body in (r for r in received if r[0] == path):
            merged.update(_points(body))
        assert merged.get("mystocks_e2e_probe") == ("mystocks-e2e", 7.0), (path, merged)

    # The collector's own telemetry (scraped as job otel-collector) counts what it took in.
    url = f"http://127.0.0.1:{ports['telemetry']}/metrics"

    def accepted():
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return [line for line in text.splitlines()
                if line.startswith("otelcol_receiver_accepted_metric_points")
                and not line.endswith(" 0")]

    assert wait_until(accepted, 15, "otelcol_receiver_accepted_metric_points > 0")


@pytest.mark.live
def test_spans_and_log_records_reach_the_trace_and_log_store_paths(start_collector, otlp_sink):
    """The SDK's spans and log records, through the built Collector, arrive at Jaeger's OTLP
    path (/v1/traces) and VictoriaLogs' (/insert/opentelemetry/v1/logs), log with its trace."""
    import logging

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    ports = start_collector(otlp_sink.url, otlp_sink.url, traces_url=otlp_sink.url, logs_url=otlp_sink.url)
    base = f"http://127.0.0.1:{ports['http']}"
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
    logger = logging.getLogger("collector-e2e")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    try:
        with tracer_provider.get_tracer("e2e").start_as_current_span("POST /orders") as span:
            trace_id = span.get_span_context().trace_id
            logger.error("order rejected")
    finally:
        logger.removeHandler(handler)
        tracer_provider.shutdown()
        logger_provider.shutdown()

    received = otlp_sink.received
    paths = {"/v1/traces", "/insert/opentelemetry/v1/logs"}
    wait_until(lambda: {p for p, _ in received} >= paths, 15, "the trace and log stores to receive data")
    spans = [s for p, body in received if p == "/v1/traces"
             for rs in ExportTraceServiceRequest.FromString(body).resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    assert [(s.name, int.from_bytes(s.trace_id, "big")) for s in spans] == [("POST /orders", trace_id)]
    records = [r for p, body in received if p == "/insert/opentelemetry/v1/logs"
               for rl in ExportLogsServiceRequest.FromString(body).resource_logs
               for sl in rl.scope_logs for r in sl.log_records]
    assert [(r.body.string_value, r.severity_text, int.from_bytes(r.trace_id, "big")) for r in records] == [
        ("order rejected", "ERROR", trace_id)]


@pytest.mark.live
def test_victoriametrics_stores_what_the_collector_fans_out(start_collector, otlp_sink,
                                                            victoriametrics):
    # The real second backend, as in docker-compose: its OTLP receiver, then queried back.
    ports = start_collector(otlp_sink.url, victoriametrics)
    _send_probe(ports["http"])

    series = wait_until(lambda: live_stack.export(victoriametrics, '{__name__=~"mystocks_e2e_probe.*"}'),
                        20, "the probe in VictoriaMetrics")
    # Prometheus naming (-opentelemetry.usePrometheusNaming): counters get _total.
    assert {s["metric"]["__name__"] for s in series} == {"mystocks_e2e_probe_total"}
    assert {s["metric"]["route"]: s["values"][-1] for s in series} == {"/quotes": 3, "/orders": 4}
    # Resource attributes become labels here (no job/instance as in Prometheus).
    assert {s["metric"]["service_name"] for s in series} == {"mystocks-e2e"}


@pytest.mark.live
def test_contrib_overlay_runs_health_check_resource_and_prometheus_exporter(start_collector,
                                                                            otlp_sink):
    """base + overlay-contrib.yaml on the built binary: what docker-compose's contrib image runs."""
    ports = start_collector(otlp_sink.url, otlp_sink.url, overlay=True)
    # health_check: what compose's collector-health sidecar probes.
    health = wait_until(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{ports['health']}/", timeout=5), 15, "health_check")
    assert health.status == 200
    _send_probe(ports["http"])

    # resource: the pushed copy carries service.namespace=collector (job "collector/...").
    received = otlp_sink.received
    wait_until(lambda: any(p == "/api/v1/otlp/v1/metrics" for p, _ in received), 15,
               "the Prometheus OTLP leg to receive data")
    assert {p for p, _ in received} == {"/api/v1/otlp/v1/metrics"}  # no VictoriaMetrics leg
    resources = [r for _, body in received for r in _resources(body)]
    assert {(r.get("service.name"), r.get("service.namespace")) for r in resources} == {
        ("mystocks-e2e", "collector")}

    # prometheus exporter: the same points, pull-style.
    url = f"http://127.0.0.1:{ports['prometheus']}/metrics"

    def probe_lines():
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return [line for line in text.splitlines() if line.startswith("mystocks_e2e_probe")]

    lines = wait_until(probe_lines, 15, "the probe on the prometheus exporter")
    values = {re.search(r'route="([^"]+)"', line).group(1): float(line.rsplit(" ", 1)[1])
              for line in lines}
    assert values == {"/quotes": 3.0, "/orders": 4.0}, lines
    assert all('job="collector/mystocks-e2e"' in line for line in lines), lines
