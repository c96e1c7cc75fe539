"""``mystocks-otel stack up|status|down`` on this machine, and the notification sink.

The live tests run the real command, once for the module: every part (PostgreSQL, Redis, the
demo with several workers, VictoriaMetrics, Jaeger, VictoriaLogs, the Collector, two clustered
Alertmanager peers, two Prometheus replicas and the console) starts on loopback; a span and a
log record sent to the Collector are found in the trace and log stores; and after ``down``
nothing it started is left listening.
"""

from __future__ import annotations

import json
import smtplib
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from support import wait_until

from mystocks_otel_dev.stack import processes, runner
from mystocks_otel_dev.stack import sink as sink_module
from mystocks_otel_dev.stack.processes import Processes
from mystocks_otel_dev.stack.configs import LOCAL_DIFFERENCES, prometheus_config

CLI = [sys.executable, "-m", "mystocks_otel.cli"]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def run_cli(*args: str, timeout: float = 1900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


EVERY_PART = {"postgresql", "redis", "sink", "victoriametrics", "jaeger", "victorialogs", "otel-collector",
              "demo", "alertmanager-a", "alertmanager-b", "prometheus-a", "prometheus-b", "prometheus-ui"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager_binary, prometheus_binary):
    """One ``stack up`` for the module's live tests (the last one, ``..._down_...``, stops it;
    the fixture stops it anyway)."""
    workdir = tmp_path_factory.mktemp("stack") / "stack"
    result = run_cli("stack", "up", "--dir", str(workdir))
    parts = {}
    if (workdir / "state.json").exists():
        parts = {c["name"]: c for c in json.loads((workdir / "state.json").read_text())["components"]}
    try:
        yield SimpleNamespace(workdir=workdir, up=result, parts=parts)
    finally:
        if (workdir / "state.json").exists():
            run_cli("stack", "down", "--dir", str(workdir), timeout=120)


def started(stack) -> dict:
    assert stack.up.returncode == 0, stack.up.stdout[-3000:] + stack.up.stderr[-2000:]
    return stack.parts


@pytest.mark.live
def test_stack_up_starts_every_part(stack):
    workdir, result, parts = stack.workdir, stack.up, started(stack)
    assert set(parts) == EVERY_PART
    # The closing table names every part with its URL and state.
    for name, part in parts.items():
        assert any(line.startswith(name) and " up " in line and part["url"] in line
                   for line in result.stdout.splitlines()), (name, result.stdout)

    # Two Prometheus 3 replicas (built from the module) with distinct replica labels, each
    # sending to both peers.
    replicas = set()
    for name in ("prometheus-a", "prometheus-b"):
        base = parts[name]["urls"]["api"]
        assert get_json(f"{base}/api/v1/status/buildinfo")["data"]["version"].startswith("3.")
        config = get_json(f"{base}/api/v1/status/config")["data"]["yaml"]
        replicas.add(next(line.split(":")[1].strip() for line in config.splitlines()
                          if line.strip().startswith("replica:")))
        targets = wait_until(lambda b=base: [t for t in get_json(
            f"{b}/api/v1/targets")["data"]["activeTargets"] if t["health"] == "up"]
            if len([t for t in get_json(f"{b}/api/v1/targets")["data"]["activeTargets"]
                    if t["health"] == "up"]) >= 7 else None, 60, f"{name} scraping every target")
        assert {t["labels"]["job"] for t in targets} >= {
            "mystocks-api", "otel-collector", "prometheus", "alertmanager"}
        am = get_json(f"{base}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        assert len(am) == 2
    assert replicas == {"a", "b"}
    # The console (Debian's Prometheus, for its web UI) reads replica a's series.
    console = parts["prometheus-ui"]["url"].removesuffix("/graph")
    assert "<html" in urllib.request.urlopen(parts["prometheus-ui"]["url"], timeout=5).read().decode().lower()
    wait_until(lambda: get_json(f"{console}/api/v1/query?query=up")["data"]["result"], 30,
               "the console reading replica a")

    # Two Alertmanager 0.35 peers in one cluster, behind the owner's basic auth (Prometheus
    # sends it: both replicas scrape them up, above).
    for name in ("alertmanager-a", "alertmanager-b"):
        with pytest.raises(urllib.error.HTTPError, match="401"):
            get_json(f"{parts[name]['url']}/api/v2/status")
        status = runner.http_json(f"{parts[name]['url']}/api/v2/status", auth_file=parts[name]["auth_file"])
        assert status["cluster"]["status"] == "ready" and len(status["cluster"]["peers"]) == 2
        assert status["versionInfo"]["version"] == "0.35.0"

    # The stack's folder and its secrets are the owner's alone; the demo reaches PostgreSQL
    # and Redis with the generated passwords.
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "state.json").stat().st_mode) == 0o600
    for path in (workdir / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    demo = parts["demo"]["urls"]["api"]
    assert wait_until(lambda: (lambda c: c["database"] is True and c["cache"] is True)(
        get_json(f"{demo}/health")["components"]), 30, "the demo's database and cache probes")
    # Its fault switches need the owner's token.
    token = (workdir / "secrets" / runner.DEMO_ADMIN_TOKEN_FILE).read_text().strip()
    for method in ("GET", "POST", "DELETE"):
        request = urllib.request.Request(f"{demo}/admin/faults", method=method, data=b"{}" if method == "POST"
                                         else None, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(request, timeout=5)
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    status = run_cli("stack", "status", "--dir", str(workdir), timeout=60)
    assert status.returncode == 0, status.stdout
    assert "sees 2 peers" in status.stdout


@pytest.mark.live
def test_status_json_gives_every_part_and_the_signal_stores(stack):
    parts = started(stack)
    done = run_cli("stack", "status", "--json", "--dir", str(stack.workdir), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "up"
    assert set(report["parts"]) == EVERY_PART
    for name, part in report["parts"].items():
        assert part["state"] == "up" and part["url"] == parts[name]["url"] and part["pid"] == parts[name]["pid"]
    traces, logs = report["traces"], report["logs"]
    assert traces["store"] == "jaeger" and traces["state"] == "up"
    assert traces["trace"] == f"{traces['query']}/api/traces/{{trace_id}}"
    assert logs["store"] == "victorialogs" and logs["state"] == "up"
    assert logs["query"].endswith("/select/logsql/query")
    assert logs["otlp_http"].endswith("/insert/opentelemetry/v1/logs")
    assert report["collector"]["otlp_http"] == parts["otel-collector"]["url"]
    # Every URL answers (the query APIs, the Collector's OTLP port, the console).
    assert "data" in get_json(f"{traces['query']}/api/services")
    urllib.request.urlopen(report["metrics"]["ui"], timeout=5).read()
    urllib.request.urlopen(logs["ui"], timeout=5).read()
    # Without a stack: state "none", exit 1.
    none = run_cli("stack", "status", "--json", "--dir", str(stack.workdir.parent / "none"), timeout=60)
    assert none.returncode == 1 and json.loads(none.stdout)["state"] == "none"


@pytest.mark.live
def test_a_span_and_a_log_record_reach_their_stores_through_the_collector(stack):
    """OTLP to the Collector, as the app sends it: the span is found by its id in Jaeger's
    query API, the log record by its trace_id in VictoriaLogs' LogsQL API."""
    import logging
    import urllib.parse

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    started(stack)
    report = json.loads(run_cli("stack", "status", "--json", "--dir", str(stack.workdir), timeout=60).stdout)
    collector = report["collector"]["otlp_http"]
    resource = Resource.create({"service.name": "stack-e2e"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector}/v1/traces",
                                                                            timeout=5)))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{collector}/v1/logs", timeout=5)))
    logger = logging.getLogger("stack-e2e")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    try:
        with tracer_provider.get_tracer("stack-e2e").start_as_current_span("GET /api/quotes") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            logger.error("order rejected: %s", "stack-e2e")
    finally:
        logger.removeHandler(handler)
        tracer_provider.shutdown()
        logger_provider.shutdown()

    def trace_found():
        try:
            data = get_json(report["traces"]["trace"].format(trace_id=trace_id))["data"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return data if data and data[0]["spans"] else None

    trace = wait_until(trace_found, 30, "the span in Jaeger", interval=0.5)
    assert trace[0]["traceID"] == trace_id
    assert [s["operationName"] for s in trace[0]["spans"]] == ["GET /api/quotes"]

    def records():
        query = urllib.parse.urlencode({"query": f"trace_id:{trace_id}"})
        with urllib.request.urlopen(f"{report['logs']['query']}?{query}", timeout=5) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]

    found = wait_until(records, 30, "the log record in VictoriaLogs", interval=0.5)
    assert len(found) == 1, found
    assert found[0]["_msg"] == "order rejected: stack-e2e"
    assert found[0]["severity_text"] == "ERROR"


@pytest.mark.live
def test_stack_down_stops_everything_it_started(stack):
    parts, workdir = started(stack), stack.workdir
    down = run_cli("stack", "down", "--dir", str(workdir), timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    ports = [p for part in parts.values() for p in [part["port"], *part["ports"]] if p]
    assert len(ports) >= 20
    assert [p for p in ports if listening(p)] == []
    assert not workdir.exists()  # nothing failed: nothing kept


def test_status_and_down_without_a_stack(tmp_path):
    assert run_cli("stack", "status", "--dir", str(tmp_path / "none"), timeout=60).returncode == 1
    assert run_cli("stack", "down", "--dir", str(tmp_path / "none"), timeout=60).returncode == 0


def test_local_config_changes_only_targets_paths_and_replica():
    base = {"global": {"scrape_interval": "15s", "external_labels": {"stack": "mystocks"}},
            "rule_files": ["/etc/prometheus/rules/*.yml"],
            "scrape_configs": [{"job_name": "mystocks-api", "metrics_path": "/metrics",
                                "static_configs": [{"targets": ["app:8000"]}]}],
            "remote_write": [{"url": "http://victoriametrics:8428/api/v1/write",
                              "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}]}]}
    local = prometheus_config(base, replica="b", targets={"mystocks-api": ["127.0.0.1:1"]},
                              rule_files=["/repo/alerts/rules/*.yml"], alertmanagers=["127.0.0.1:2"],
                              remote_write_url="http://127.0.0.1:3/api/v1/write")
    assert local["global"] == {"scrape_interval": "15s",
                               "external_labels": {"stack": "mystocks", "replica": "b"}}
    assert local["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert local["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]
    assert local["remote_write"][0]["write_relabel_configs"] == base["remote_write"][0]["write_relabel_configs"]
    assert local["remote_write"][0]["url"] == "http://127.0.0.1:3/api/v1/write"
    assert base["rule_files"] == ["/etc/prometheus/rules/*.yml"]  # the compose file is untouched
    assert {part for part, _, _ in LOCAL_DIFFERENCES} == {"Prometheus", "Collector", "Alertmanager", "Jaeger",
                                                          "VictoriaLogs"}


def test_sink_names_the_receiver_of_every_channel(tmp_path):
    record = tmp_path / "n.jsonl"
    with Processes(tmp_path / "procs") as procs:
        proc = procs.start(processes.sink(record))
        base, smtp_port = proc.url.rstrip("/"), proc.ports[0]

        def post(path: str, body: dict) -> int:
            request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status

        webhook = {"status": "firing", "alerts": [{"labels": {"alertname": "RedisDown"}}]}
        assert post("/slack/slack-critical", {"attachments": [{"title": "[FIRING:1] RedisDown"}]}) == 200
        assert post("/pagerduty", {"routing_key": sink_module.PAGERDUTY_KEYS["pagerduty-service"],
                                   "event_action": "trigger", "payload": {"summary": "RedisDown"}}) == 200
        assert post("/webhook", webhook) == 200
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
            smtp.sendmail("am@sink.invalid", ["platform@sink.invalid"],
                          "Subject: [MyStocks] [FIRING:1] CRITICAL RedisDown\r\n\r\nbody\r\n")
        items = wait_until(lambda: (lambda d: d if len(d) == 4 else None)(
            get_json(f"{base}/api/notifications")), 10, "four notifications")
        assert [(i["receiver"], i["status"]) for i in items] == [
            ("slack-critical", "firing"), ("pagerduty-service", "firing"), ("webhook", "firing"),
            ("email-platform", "firing")]
        assert all(any("RedisDown" in n for n in i["alertnames"]) for i in items)
        assert len(record.read_text().splitlines()) == 4  # kept on disk too
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert "slack-critical" in page and "email-platform" in page
        # Malformed input: a 4xx, never a crash.
        bad = urllib.request.Request(base + "/webhook", data=b"x", method="POST",
                                     headers={"Content-Length": "-5"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=5)
        assert error.value.code == 400
        assert proc.alive()
        # The HTTP receivers' headers are kept (the app webhook's bearer token is checked).
        assert all("headers" in i for i in items if i["channel"].startswith("http"))


def test_sink_leaves_socketserver_defaults_alone(tmp_path):
    """The sink's SMTP server reuses its address through its own class, not socketserver's."""
    import socketserver

    server = sink_module.smtp_server(sink_module.Record(tmp_path / "n.jsonl"), 0)
    server.server_close()
    assert server.allow_reuse_address is True
    assert socketserver.ThreadingTCPServer.allow_reuse_address is False
