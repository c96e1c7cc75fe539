"""Logs with their trace, end to end: a real uvicorn app under ``opentelemetry-instrument`` (no
code change) exports its spans and its ``logging`` records over OTLP to a local receiver, and
writes JSON lines on stdout. A record logged during a request carries that request's trace and
span; an uncaught exception is logged once, with its trace (uvicorn's own record stays on
uvicorn's handler); when FastAPI's native telemetry logs the exception itself, its record wins
and ours is not written. With the Collector gone, shutdown is not held up."""

from __future__ import annotations

import json

from harness import base_env, request, run_process, uvicorn_argv
from otlp_servers import RecordingCollector
from support import free_port, wait_until

PLAIN_APP = '''
import logging
from fastapi import FastAPI

app = FastAPI()
log = logging.getLogger("shop")
logging.getLogger().setLevel(logging.INFO)


@app.get("/ok/{item}")
def ok(item: str):
    log.info("handled %s", item)
    return "ok"


@app.get("/fail")
def fail():
    raise RuntimeError("the order book is gone")
'''

NATIVE_APP = '''
import os
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

own = LoggerProvider()
own.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
app = FastAPI(telemetry={"logger_provider": own, "metrics": False})


@app.get("/fail")
def fail():
    raise RuntimeError("the order book is gone")
'''

ENV = dict(OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp", OTEL_METRICS_EXPORTER="prometheus",
           OTEL_BSP_SCHEDULE_DELAY="100", OTEL_BLRP_SCHEDULE_DELAY="100",
           MYSTOCKS_OTEL_TRACES_KEEP_RATIO="1", MYSTOCKS_OTEL_SYSTEM_METRICS="false")


def hex_id(raw: bytes) -> str:
    return raw.hex()


def servers_by_route(collector) -> dict[str, list]:
    found: dict[str, list] = {}
    for span in collector.spans():
        if span.kind == 2:  # SPAN_KIND_SERVER
            found.setdefault(span.name, []).append(span)
    return found


def test_logs_carry_their_trace_and_an_uncaught_exception_is_logged_once(tmp_path):
    (tmp_path / "plain_app.py").write_text(PLAIN_APP)
    with RecordingCollector() as collector:
        env = base_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                       MYSTOCKS_OTEL_LOG_FORMAT="json", **ENV)
        port = free_port()
        with run_process(uvicorn_argv("plain_app:app", port), tmp_path, env) as app:
            app.wait_port(port)
            assert request(port, "/ok/apple")[0] == 200
            assert [request(port, "/fail")[0] for _ in range(2)] == [500, 500]
            wait_until(lambda: len(servers_by_route(collector).get("GET /fail", [])) == 2
                       and len([r for r in collector.log_records() if r.severity_text == "ERROR"]) >= 2,
                       what="the failing requests' spans and log records")
            assert app.terminate() < 5
            output = app.output()
    servers = servers_by_route(collector)
    (ok_span,) = servers["GET /ok/{item}"]
    records = collector.log_records()
    (handled,) = [r for r in records if r.body.string_value == "handled apple"]
    assert (hex_id(handled.trace_id), hex_id(handled.span_id)) == (
        hex_id(ok_span.trace_id), hex_id(ok_span.span_id))
    errors = [r for r in records if r.severity_text == "ERROR"]
    assert len(errors) == 2, [r.body.string_value for r in errors]  # once per request
    fail_ids = {(hex_id(s.trace_id), hex_id(s.span_id)) for s in servers["GET /fail"]}
    assert {(hex_id(r.trace_id), hex_id(r.span_id)) for r in errors} == fail_ids
    for record in errors:
        attributes = {kv.key: kv.value.string_value for kv in record.attributes}
        assert attributes["exception.type"] == "RuntimeError"
        assert "the order book is gone" in attributes["exception.stacktrace"]
        assert attributes["http.route"] == "/fail"
    # uvicorn still prints its own traceback on its own handler, as without us
    assert output.count("Exception in ASGI application\n") == 2
    # JSON lines on stdout, with the same ids
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    (line,) = [x for x in lines if x["message"] == "handled apple"]
    assert (line["trace_id"], line["span_id"]) == (hex_id(ok_span.trace_id), hex_id(ok_span.span_id))
    assert line["level"] == "INFO" and line["logger"] == "shop"
    json_errors = [x for x in lines if x["level"] == "ERROR"]
    assert len(json_errors) == 2 and all("RuntimeError" in x["exception"] for x in json_errors)


def test_fastapis_native_exception_record_wins_over_ours(tmp_path):
    (tmp_path / "native_app.py").write_text(NATIVE_APP)
    with RecordingCollector() as collector:
        env = base_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, **ENV)
        port = free_port()
        with run_process(uvicorn_argv("native_app:app", port), tmp_path, env) as app:
            app.wait_port(port)
            assert request(port, "/fail")[0] == 500
            wait_until(lambda: servers_by_route(collector).get("GET /fail")
                       and collector.log_records(), what="the span and FastAPI's record")
            app.terminate()
    (span,) = servers_by_route(collector)["GET /fail"]
    errors = [r for r in collector.log_records() if r.severity_number >= 17]  # ERROR and above
    assert len(errors) == 1, [(r.event_name, r.body.string_value) for r in errors]
    (record,) = errors
    assert record.event_name == "http.server.request.exception"
    assert hex_id(record.trace_id) == hex_id(span.trace_id)  # emitted inside our server span


def dropped(port: int, metric: str) -> float:
    from harness import scrape, series

    return sum(s.value for s in series(scrape(port), metric) if s.labels.get("reason") == "export_failed")


def test_a_dead_collector_never_holds_shutdown_and_its_drops_are_counted(tmp_path):
    (tmp_path / "plain_app.py").write_text(PLAIN_APP)
    dead = free_port()  # nothing listens there
    env = base_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}",
                   OTEL_EXPORTER_OTLP_TIMEOUT="1",  # the exporters give up after 1 s of retries
                   **{**ENV, "OTEL_METRICS_EXPORTER": "prometheus,otlp"})
    port = free_port()
    with run_process(uvicorn_argv("plain_app:app", port), tmp_path, env) as app:
        app.wait_port(port)
        for i in range(50):
            assert request(port, f"/ok/{i}")[0] == 200
        assert request(port, "/fail")[0] == 500
        wait_until(lambda: dropped(port, "mystocks_telemetry_dropped_spans_total") >= 51
                   and dropped(port, "mystocks_telemetry_dropped_log_records_total") >= 51,
                   timeout=30, what="the spans and records the dead Collector lost, counted")
        elapsed = app.terminate(timeout=15)
        assert elapsed < 5, (elapsed, app.output()[-2000:])
