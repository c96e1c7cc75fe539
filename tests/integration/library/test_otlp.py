"""OTLP/HTTP push from a real app process, to a real (tiny) receiver, a dead port and a hung one."""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import base_env, get, run_process, scrape, series, uvicorn_argv
from support import free_port, wait_until
from otlp_servers import BlackHole, RecordingCollector

pytestmark = pytest.mark.live

APP_SOURCE = Path(__file__).parent / "apps" / "setup_app.py"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    shutil.copy(APP_SOURCE, tmp_path / "setup_app.py")
    return tmp_path


def otlp_env(app_dir: Path, endpoint: str, exporters: str = "otlp", **extra) -> dict:
    settings = {
        "OTEL_METRICS_EXPORTER": exporters, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_SERVICE_NAME": "mystocks-itest",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=itest,team=quant",
        "MYSTOCKS_OTEL_SYSTEM_METRICS": "false",
    }
    return base_env(app_dir, **{**settings, **extra})


def start_app(app_dir: Path, env: dict):
    port = free_port()
    return port, run_process(uvicorn_argv("setup_app:app", port, instrument=False), app_dir, env)


def test_pushes_our_metrics_with_resource(app_dir):
    with RecordingCollector() as collector:
        port, ctx = start_app(app_dir, otlp_env(app_dir, collector.endpoint))
        with ctx as proc:
            proc.wait_port(port)
            for n in range(5):
                assert get(port, f"/ping/{n}")[0] == 200
            wait_until(lambda: {"http.server.request.duration", "mystocks.trading.orders"}
                     <= collector.metric_names(), what="our metrics pushed")
            wait_until(lambda: any(v == 5 for _, v in collector.sum_points("mystocks.trading.orders")),
                     what="5 orders pushed")
        assert set(collector.paths) == {"/v1/metrics"}
        resources = collector.resource_attributes()
        assert all(r["service.name"] == "mystocks-itest" for r in resources), resources
        assert all(r.get("deployment.environment") == "itest" for r in resources), resources
        assert all(r.get("team") == "quant" for r in resources), resources
        instance_ids = {r.get("service.instance.id") for r in resources}
        assert len(instance_ids) == 1 and all(instance_ids), instance_ids


def test_metrics_specific_endpoint_is_honoured(app_dir):
    with RecordingCollector() as collector:
        env = otlp_env(app_dir, "http://127.0.0.1:9", OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=
                       f"{collector.endpoint}/v1/metrics")
        port, ctx = start_app(app_dir, env)
        with ctx as proc:
            proc.wait_port(port)
            assert get(port, "/ping/1")[0] == 200
            wait_until(lambda: "mystocks.trading.orders" in collector.metric_names(),
                     what="push to the metrics-specific endpoint")


def test_prometheus_and_otlp_together(app_dir):
    with RecordingCollector() as collector:
        port, ctx = start_app(app_dir, otlp_env(app_dir, collector.endpoint, "prometheus,otlp"))
        with ctx as proc:
            proc.wait_port(port)
            for n in range(3):
                assert get(port, f"/ping/{n}")[0] == 200
            text = scrape(port)
            assert series(text, "mystocks_trading_orders_total")[0].value == 3
            wait_until(lambda: any(v == 3 for _, v in collector.sum_points("mystocks.trading.orders")),
                     what="3 orders pushed")


def _interval_in_subprocess(tmp_path: Path, **env) -> int:
    code = ("from mystocks_otel import config\nfrom mystocks_otel._internal import provider\n"
            "state = provider.start(config.load())\n"
            "print(state.readers['otlp']._export_interval_millis)\n"
            "provider.shutdown(timeout_millis=500)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, env=base_env(tmp_path, OTEL_METRICS_EXPORTER="otlp",
                                                     OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                                                     **env))
    assert result.returncode == 0, result.stderr
    return int(float(result.stdout.strip()))


def test_default_export_interval_is_15s(tmp_path):
    assert _interval_in_subprocess(tmp_path) == 15_000
    assert _interval_in_subprocess(tmp_path, OTEL_METRIC_EXPORT_INTERVAL="500") == 500


# -- a dead Collector never blocks or slows requests ------------------------------------------

class Driver:
    """Sequential keep-alive requests to one app; every response must be 200."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.latencies: list[float] = []

    def once(self) -> None:
        started = time.perf_counter()
        self.conn.request("GET", "/fast")
        response = self.conn.getresponse()
        response.read()
        self.latencies.append(time.perf_counter() - started)
        assert response.status == 200


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def compare_with_control(app_dir: Path, dead_endpoint: str, hook: dict) -> str:
    """Run a control (Prometheus only) and an OTLP-to-a-dead-endpoint app side by side,
    alternating 200 requests between them so machine load hits both alike."""
    control_port, control_ctx = start_app(app_dir, otlp_env(app_dir, dead_endpoint, "prometheus",
                                                            **hook))
    dead_port, dead_ctx = start_app(app_dir, otlp_env(app_dir, dead_endpoint, **hook))
    with control_ctx as control_proc, dead_ctx as dead_proc:
        control_proc.wait_port(control_port)
        dead_proc.wait_port(dead_port)
        control, dead = Driver(control_port), Driver(dead_port)
        for _ in range(20):  # warm-up
            control.once(), dead.once()
        time.sleep(1.2)  # export attempts (every 0.5 s) are under way or failed
        control.latencies.clear(), dead.latencies.clear()
        for _ in range(200):
            control.once()
            dead.once()
            time.sleep(0.005)
        dead_stop = dead_proc.terminate(timeout=20)
        control_stop = control_proc.terminate(timeout=20)
    a, c = dead.latencies, control.latencies
    report = (f"p50 {p(a, 50) * 1e3:.2f} ms vs control {p(c, 50) * 1e3:.2f} ms, "
              f"p95 {p(a, 95) * 1e3:.2f} ms vs {p(c, 95) * 1e3:.2f} ms, "
              f"SIGTERM to exit {dead_stop:.1f} s vs {control_stop:.1f} s")
    print(report)
    assert len(a) == len(c) == 200
    assert p(a, 50) < 3 * p(c, 50) + 0.005, report
    assert p(a, 95) < 3 * p(c, 95) + 0.005, report
    assert dead_stop < 15, report
    return report


@pytest.mark.parametrize("shutdown_hook", [False, True], ids=["atexit", "handle.shutdown"])
def test_closed_port_collector_does_not_slow_requests(app_dir, shutdown_hook):
    hook = {"APP_SHUTDOWN_HOOK": "1"} if shutdown_hook else {}
    compare_with_control(app_dir, f"http://127.0.0.1:{free_port()}", hook)


@pytest.mark.parametrize("shutdown_hook", [False, True], ids=["atexit", "handle.shutdown"])
def test_hung_collector_does_not_slow_requests(app_dir, shutdown_hook):
    hook = {"APP_SHUTDOWN_HOOK": "1"} if shutdown_hook else {}
    with BlackHole() as hole:
        compare_with_control(app_dir, hole.endpoint, hook)
        assert hole.accepted, "the exporter never connected to the hung Collector"


# -- the last interval is not lost on a graceful stop -----------------------------------------

@pytest.mark.parametrize("zero_code", [False, True], ids=["setup_telemetry", "opentelemetry-instrument"])
def test_sigterm_flushes_the_last_interval(app_dir, zero_code):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so atexit hooks never run:
    the final export must be tied to the app's shutdown, or up to one interval is lost."""
    shutil.copy(APP_SOURCE.with_name("plain_app.py"), app_dir / "plain_app.py")
    with RecordingCollector() as collector:
        env = otlp_env(app_dir, collector.endpoint, OTEL_METRIC_EXPORT_INTERVAL="60000")
        port = free_port()
        target = "plain_app:app" if zero_code else "setup_app:app"
        with run_process(uvicorn_argv(target, port, instrument=zero_code), app_dir, env) as proc:
            proc.wait_port(port)
            for n in range(3):
                assert get(port, f"/ping/{n}")[0] == 200
            stop = proc.terminate(timeout=20)
        assert stop < 15
        pushed = [v for _, v in collector.sum_points("mystocks.trading.orders")]
        assert pushed and max(pushed) == 3, f"nothing flushed on SIGTERM: {pushed}"
