"""Whose MeterProvider: FastAPI's native telemetry beside ours, and another SDK's provider set
first. Real uvicorn processes, in both modes (the one line and ``opentelemetry-instrument``).

- FastAPI's native telemetry active on ours (``telemetry={"meter_provider":
  metrics.get_meter_provider()}``): HTTP metrics exactly once per request, ours;
- another SDK's provider set first (the app's own SDK MeterProvider): it is kept, FastAPI's
  native HTTP metrics and the app's instruments go to it, exactly once; ours (business metrics,
  /metrics) still work, and one warning says what happened.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from harness import base_env, get, run_process, scrape, series, uvicorn_argv
from support import free_port

pytestmark = pytest.mark.live

NATIVE_APP = '''
import os

from fastapi import FastAPI, Request
from opentelemetry import metrics

# FastAPI's native telemetry, told to use the global provider (ours once set up)
app = FastAPI(telemetry={"meter_provider": metrics.get_meter_provider()})
if os.environ.get("APP_ZERO_CODE") != "1":
    import mystocks_otel

    mystocks_otel.setup_telemetry(app)


@app.get("/hit/{n}")
def hit(n: int, request: Request):
    return {"native": request.scope.get("fastapi.telemetry") is not None}
'''

OTHER_SDK_APP = '''
import os

from fastapi import FastAPI, Request
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import mystocks_otel

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # the app's own SDK, first
sold = metrics.get_meter("shop").create_counter("shop.widgets.sold")

app = FastAPI()
if os.environ.get("APP_ZERO_CODE") != "1":
    mystocks_otel.setup_telemetry(app)


@app.get("/hit/{n}")
def hit(n: int, request: Request):
    sold.add(1)
    mystocks_otel.record_order("buy", "market", "accepted")
    return {"native": request.scope.get("fastapi.telemetry") is not None}


@app.get("/sdk")
def sdk():
    """What the app's own provider collected: {metric: total (a histogram's count)}."""
    totals = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                totals[m.name] = sum(getattr(p, "count", None) or getattr(p, "value", 0)
                                     for p in m.data.data_points if "/sdk" not in str(p.attributes))
    return totals
'''

CALLS = 25


@contextlib.contextmanager
def app_hit(tmp_path, source: str, mode: str = "one-line", wait=(), **env):
    """``source`` served by uvicorn (``mode``), it and the ports in ``wait`` up, and every
    ``/hit/{n}`` called: yields (port, process)."""
    (tmp_path / "provider_app.py").write_text(source)
    port = free_port()
    env = base_env(tmp_path, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   APP_ZERO_CODE="1" if mode == "zero-code" else "0", **env)
    argv = uvicorn_argv("provider_app:app", port, instrument=mode == "zero-code")
    with run_process(argv, tmp_path, env) as proc:
        for up in (port, *wait):
            proc.wait_port(up)
        hit_all(port)
        yield port, proc


def hit_all(port: int) -> None:
    for n in range(CALLS):
        status, body = get(port, f"/hit/{n}")
        assert status == 200, body
        assert json.loads(body)["native"], "FastAPI's native telemetry did not run"


def http_counts(text: str) -> float:
    return sum(s.value for s in series(text, "http_server_request_duration_seconds_count")
               if s.labels.get("http_route") == "/hit/{n}")


@pytest.mark.parametrize("mode", ["one-line", "zero-code"])
def test_native_telemetry_on_our_provider_counts_each_request_once(tmp_path, mode):
    with app_hit(tmp_path, NATIVE_APP, mode) as (port, proc):
        text = scrape(port)
    assert http_counts(text) == CALLS  # ours, once: FastAPI's own instruments are no-ops on ours
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(names) == len(set(names))  # no family twice
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


@pytest.mark.parametrize("mode", ["one-line", "zero-code"])
def test_another_sdks_provider_set_first_is_kept(tmp_path, mode):
    with app_hit(tmp_path, OTHER_SDK_APP, mode) as (port, proc):
        status, body = get(port, "/sdk")
        assert status == 200, body
        theirs = json.loads(body)
        text = scrape(port)
    # HTTP metrics exactly once: FastAPI's native ones, on the app's provider; ours step aside
    assert theirs["http.server.request.duration"] == CALLS
    assert http_counts(text) == 0
    # the app's instruments go to its provider, not to /metrics
    assert theirs["shop.widgets.sold"] == CALLS
    assert "shop_widgets_sold" not in text
    # our own metrics still work
    assert sum(s.value for s in series(text, "mystocks_trading_orders_total")) == CALLS
    warnings = [line for line in proc.output().splitlines() if "another MeterProvider" in line]
    assert len(warnings) == 1, proc.output()[-3000:]
    assert "Overriding of current MeterProvider" not in proc.output()


STANDALONE_APP = '''
import prometheus_client
from fastapi import FastAPI
from opentelemetry import metrics

import mystocks_otel

app = FastAPI()
mystocks_otel.setup_telemetry(app)
sold = metrics.get_meter("shop").create_counter("shop.widgets.sold")  # after set-up
gadgets = prometheus_client.Counter("shop_gadgets_sold", "Gadgets sold.")


@app.get("/hit/{n}")
def hit(n: int):
    sold.add(1)
    gadgets.inc()
    return {"native": True}
'''


def test_the_standalone_port_serves_the_apps_metrics_too(tmp_path):
    metrics_port = free_port()
    with app_hit(tmp_path, STANDALONE_APP, wait=(metrics_port,),
                 OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port)) as (port, _):
        pages = [scrape(port), scrape(metrics_port)]
    for text in pages:
        assert sum(s.value for s in series(text, "shop_widgets_sold_total")) == CALLS
        assert sum(s.value for s in series(text, "shop_gadgets_sold_total")) == CALLS
