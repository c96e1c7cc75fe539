"""Issue 16's "Done when", live: metrics, traces and logs joined, on the whole stack.

On the session's stack (``mystocks-otel stack up``: the demo under two uvicorn workers in
multiprocess mode, the Collector, Jaeger v2 and VictoriaLogs), 1,000 requests to the demo of
which 50 fail. The test chooses every request's trace id itself (a W3C ``traceparent`` header,
sampled), so it knows which traces must be stored:

- every exemplar on the demo's ``/metrics`` (OpenMetrics) resolves in Jaeger's API;
- all 50 failing requests' traces are stored;
- VictoriaLogs holds exactly 50 ERROR records with those trace ids;
- of the 950 successful requests, exactly the traces the keep ratio picks by trace id are stored
  (the SDK's TraceIdRatioBased rule; a slow one may be kept besides), near the ratio.

The same holds for a plain app under ``opentelemetry-instrument`` (no code change; its
failures are uncaught exceptions, logged once with their trace) sending to the same Collector.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import free_port, wait_until

from mystocks_otel.config import Settings
from mystocks_otel._internal.sampling import Policy
from mystocks_otel_dev.stack import processes, runner
from mystocks_otel_dev.stack.processes import Processes

pytestmark = pytest.mark.live

REQUESTS, FAILURES = 1000, 50
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

PLAIN_APP = '''
import logging
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/items/{item}")
def item(item: str):
    if item == "broken":
        raise RuntimeError("the order book is gone")
    return {"item": item}
'''


def traceparent(trace_id: int) -> str:
    return f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-01"


def call(url: str, trace_id: int, timeout: float = 10.0) -> int:
    request = urllib.request.Request(url, headers={"traceparent": traceparent(trace_id)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def stored(trace_url: str, trace_id: str) -> bool:
    try:
        with urllib.request.urlopen(trace_url.format(trace_id=trace_id), timeout=5) as response:
            return bool(json.loads(response.read()).get("data"))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def error_records(query_url: str, trace_ids: list[str]) -> list[dict]:
    query = f"_time:1h trace_id:in({','.join(trace_ids)})"
    url = f"{query_url}?{urllib.parse.urlencode({'query': query, 'limit': 10000})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        records = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    return [r for r in records
            if "ERROR" in (r.get("severity"), r.get("severity_text"), r.get("level"))]


def exemplar_trace_ids(metrics_url: str) -> set[str]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    request = urllib.request.Request(metrics_url, headers={"Accept": OPENMETRICS})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {s.exemplar.labels["trace_id"].rjust(32, "0")
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.exemplar is not None}


def drive(url_for, fail_switch=None) -> tuple[list[int], list[int]]:
    """1,000 requests with chosen trace ids, the first 50 failing. Returns (failing, ok) ids."""
    ids = [random.getrandbits(128) | 1 for _ in range(REQUESTS)]
    failing, ok = ids[:FAILURES], ids[FAILURES:]
    if fail_switch:
        fail_switch(True)
    try:
        statuses = [call(url_for(True), trace_id) for trace_id in failing]
    finally:
        if fail_switch:
            fail_switch(False)
    assert statuses == [500] * FAILURES, statuses
    statuses = [call(url_for(False), trace_id) for trace_id in ok]
    assert statuses == [200] * len(ok), sorted(set(statuses))
    return failing, ok


def check_signals(trace_url: str, logs_url: str, metrics_url: str, failing: list[int],
                  ok: list[int], ratio: float) -> dict:
    fail_hex = [format(i, "032x") for i in failing]
    wait_until(lambda: all(stored(trace_url, t) for t in fail_hex), 90,
               "all 50 failing traces in Jaeger", interval=2)
    wait_until(lambda: len(error_records(logs_url, fail_hex)) >= FAILURES, 60,
               "the failing requests' ERROR records in VictoriaLogs", interval=2)
    records = error_records(logs_url, fail_hex)
    per_trace = {}
    for record in records:
        per_trace[record["trace_id"]] = per_trace.get(record["trace_id"], 0) + 1
    assert len(records) == FAILURES and set(per_trace) == set(fail_hex), per_trace
    policy = Policy(ratio=ratio)
    expected = {format(i, "032x") for i in ok if policy.by_ratio(i)}
    wait_until(lambda: all(stored(trace_url, t) for t in expected), 60,
               "the successful traces the ratio keeps", interval=2)
    kept = {format(i, "032x") for i in ok if stored(trace_url, format(i, "032x"))}
    assert expected <= kept
    assert len(kept - expected) <= 0.02 * len(ok), "dropped-by-ratio traces were stored"
    spread = 4 * math.sqrt(len(ok) * ratio * (1 - ratio))
    assert abs(len(kept) - ratio * len(ok)) <= spread + len(kept - expected), (len(kept), ratio)
    exemplars = exemplar_trace_ids(metrics_url)
    assert exemplars, "no exemplar on /metrics"
    wait_until(lambda: all(stored(trace_url, t) for t in exemplars), 60,
               "every exemplar's trace in Jaeger", interval=2)
    return {"kept": len(kept), "exemplars": len(exemplars)}


def test_the_demos_exemplars_traces_and_error_logs_are_joined(stack):
    jaeger, logs = stack.parts["jaeger"].urls["trace"], stack.parts["victorialogs"].urls["query"]
    # A fresh demo server: the session's earlier scenarios stopped the Collector on purpose, and
    # an exemplar kept from then (the latest of a bucket rarely hit since) points at a trace that
    # outage lost. "Every exemplar resolves" is judged on what this server recorded.
    runner.stop_one(stack.workdir, "demo")
    runner.start_one(stack.workdir, "demo")
    stack.reset_faults()
    result = check_signals(
        jaeger, logs, f"{stack.demo}/metrics",
        *drive(lambda failing: f"{stack.demo}/api/quotes/AAPL",
               lambda on: stack.faults(error_rate=1.0) if on else stack.reset_faults()),
        ratio=float(stack.parts["demo"].env.get("MYSTOCKS_OTEL_TRACES_KEEP_RATIO",
                                                Settings().traces_keep_ratio)))
    print(f"demo: {result}")


def test_a_plain_app_under_opentelemetry_instrument_joins_them_too(stack, tmp_path):
    (tmp_path / "plain_app.py").write_text(PLAIN_APP)
    collector = stack.parts["otel-collector"].urls["otlp_http"]
    port = free_port()
    bin_dir = Path(sys.executable).parent
    spec = processes.Spec(
        "plain-app", [str(bin_dir / "opentelemetry-instrument"), str(bin_dir / "uvicorn"), "plain_app:app",
                      "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-access-log"],
        url=f"http://127.0.0.1:{port}", port=port, ready_url=f"http://127.0.0.1:{port}/metrics/health",
        env={"PYTHONPATH": str(tmp_path), "OTEL_SERVICE_NAME": "plain-app",
             "OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
             "OTEL_EXPORTER_OTLP_ENDPOINT": collector.removesuffix("/v1/traces").removesuffix("/"),
             "OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_BLRP_SCHEDULE_DELAY": "500"},
        cwd=str(tmp_path), start_timeout=60)
    with Processes(tmp_path / "procs") as procs:
        app = procs.start(spec)
        base = app.url
        result = check_signals(
            stack.parts["jaeger"].urls["trace"], stack.parts["victorialogs"].urls["query"],
            f"{base}/metrics",
            *drive(lambda failing: f"{base}/api/items/{'broken' if failing else 'apple'}"),
            ratio=Settings().traces_keep_ratio)
    print(f"plain app: {result}")
    shutil.rmtree(tmp_path / "procs", ignore_errors=True)
