"""The HTTP options (buckets, body sizes, grouped status codes, excluded patterns) set by
environment in real servers, through every door: the multiprocess merge of uvicorn
``--workers 2`` (in-app /metrics), the standalone port (``OTEL_EXPORTER_PROMETHEUS_PORT``) and
OTLP, under ``opentelemetry-instrument``. In one process they are in
tests/unit/library/test_http_options_asgi.py.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import base_env, get, run_process, scrape, series, uvicorn_argv
from otlp_servers import RecordingCollector
from support import free_port, wait_until

pytestmark = pytest.mark.live

BUCKETS = "0.3,1,3"
LES = ["0.3", "1.0", "3.0", "+Inf"]
OPTIONS = {
    "MYSTOCKS_OTEL_HTTP_BUCKETS": BUCKETS,
    "MYSTOCKS_OTEL_HTTP_BODY_SIZE": "true",
    "MYSTOCKS_OTEL_HTTP_GROUP_STATUS_CODES": "true",
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": r"^/internal/.*,/api/ping$",
    "MYSTOCKS_OTEL_SYSTEM_METRICS": "false",
    "PYTHONWARNINGS": "ignore",
}
APP = '''
import os, time
from fastapi import FastAPI

app = FastAPI()


@app.get("/work/{n}")
async def work(n: int, block: float = 0.0):
    time.sleep(min(block, 0.1))  # holds this worker: the kernel hands the next ones to others
    return {"pid": os.getpid(), "pad": "x" * 100}


@app.get("/internal/state")
def internal():
    return {"ok": True}


@app.get("/api/ping")
def ping():
    return "pong"
'''
ROUTE = "/work/{n}"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "options_app.py").write_text(APP)
    return tmp_path


def work(port: int, n: int, block: float = 0.0) -> tuple[int, int]:
    """One request; (pid that served it, response body size)."""
    status, body = get(port, f"/work/{n}?block={block}")
    assert status == 200, body
    return json.loads(body)["pid"], len(body.encode())


def check_page(text: str, requests: int, size: int) -> None:
    """``requests`` on ROUTE, in the configured buckets, with body sizes, grouped codes, and
    nothing of the excluded paths."""
    buckets = series(text, "http_server_request_duration_seconds_bucket")
    assert sorted({s.labels["le"] for s in buckets if s.labels.get("http_route") == ROUTE},
                  key=lambda le: float(le)) == LES
    counts = {(s.labels.get("http_route"), s.labels["http_response_status_code"]): s.value
              for s in series(text, "http_server_request_duration_seconds_count")}
    # /internal/state and /api/ping are excluded; the user's patterns replace the default ones,
    # so the app's own /metrics scrapes are measured (the standalone port's never are)
    assert counts.pop((ROUTE, "2xx")) == requests and set(counts) <= {("/metrics", "2xx")}, counts
    response = {s.labels["http_route"]: s.value
                for s in series(text, "http_server_response_body_size_bytes_sum")}
    assert response.pop(ROUTE) == requests * size and set(response) <= {"/metrics"}, response
    request = {s.labels["http_route"]: s.value
               for s in series(text, "http_server_request_body_size_bytes_count")}
    assert request.pop(ROUTE) == requests and set(request) <= {"/metrics"}, request


def test_options_hold_in_the_merge_of_two_uvicorn_workers(app_dir):
    port = free_port()
    argv = uvicorn_argv("options_app:app", port, "--workers", "2")
    with run_process(argv, app_dir, base_env(app_dir, **OPTIONS)) as proc:
        proc.wait_port(port, timeout=30)
        wait_until(lambda: proc.output().count("multiprocess mode: workers of") >= 2 or None,
                   what="two workers set up", proc=proc.proc)
        for path in ("/internal/state", "/api/ping"):
            assert get(port, path)[0] == 200
        served, sizes, sent = set(), set(), 0
        with ThreadPoolExecutor(4) as pool:
            while sent < 200 and (sent < 20 or len(served) < 2):
                for pid, size in pool.map(lambda i: work(port, i, 0.02), range(sent, sent + 4)):
                    served.add(pid)
                    sizes.add(size)
                sent += 4
        assert len(served) == 2, f"one worker served all {sent} requests"
        (size,) = sizes
        wait_until(lambda: sum(s.value for s in series(scrape(port), "http_server_request_duration_seconds_count")
                               if s.labels.get("http_route") == ROUTE) == sent,
                   what=f"{sent} requests on /metrics")
        for _ in range(4):  # whichever worker answers, the merge is the same
            check_page(scrape(port), sent, size)
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def otlp_histograms(collector: RecordingCollector, name: str) -> list:
    return [point for request in collector.snapshot() for rm in request.resource_metrics
            for sm in rm.scope_metrics for metric in sm.metrics
            if metric.name == name and metric.HasField("histogram")
            for point in metric.histogram.data_points]


def test_options_hold_on_the_standalone_port_and_over_otlp(app_dir):
    port, metrics = free_port(), free_port()
    with RecordingCollector() as collector:
        env = base_env(app_dir, **OPTIONS, OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics),
                       OTEL_METRICS_EXPORTER="prometheus,otlp",
                       OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                       OTEL_METRIC_EXPORT_INTERVAL="300")
        with run_process(uvicorn_argv("options_app:app", port), app_dir, env) as proc:
            proc.wait_port(port)
            proc.wait_port(metrics)
            for path in ("/internal/state", "/api/ping"):
                assert get(port, path)[0] == 200
            size = {work(port, n)[1] for n in range(5)}.pop()
            wait_until(lambda: any(s.value == 5 for s in series(
                scrape(metrics), "http_server_request_duration_seconds_count")), what="5 requests")
            check_page(scrape(metrics), 5, size)

            def pushed():
                points = otlp_histograms(collector, "http.server.request.duration")
                return points if points and points[-1].count == 5 else None

            latest = wait_until(pushed, what="5 requests pushed")[-1]
            assert list(latest.explicit_bounds) == [0.3, 1.0, 3.0]
            attributes = {kv.key: kv.value for kv in latest.attributes}
            assert attributes["http.response.status_code"].string_value == "2xx"
            assert attributes["http.route"].string_value == ROUTE
            sizes = otlp_histograms(collector, "http.server.response.body.size")
            assert sizes and sizes[-1].sum == 5 * size
            routes = {kv.value.string_value for request in collector.snapshot()
                      for rm in request.resource_metrics for sm in rm.scope_metrics
                      for metric in sm.metrics if metric.name.startswith("http.server")
                      and metric.HasField("histogram")
                      for point in metric.histogram.data_points for kv in point.attributes
                      if kv.key == "http.route"}
            assert routes == {ROUTE}  # the standalone port's scrapes are not the app's traffic
        assert "Traceback" not in proc.output(), proc.output()[-3000:]
