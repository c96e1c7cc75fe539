"""Zero-code instrumentation: ``opentelemetry-instrument uvicorn app:app`` in real processes.

The app (apps/distro_app.py) never calls setup_telemetry; the distro must make it
report HTTP, WebSocket, SQLAlchemy, Redis, system and business metrics, with no
duplicate upstream series.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import websockets

from harness import INSTRUMENT, base_env, get, run_process, samples, scrape, series, uvicorn_argv
from support import free_port, wait_until

pytestmark = pytest.mark.live

APP_SOURCE = Path(__file__).parent / "apps" / "distro_app.py"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    shutil.copy(APP_SOURCE, tmp_path / "distro_app.py")
    return tmp_path


def exercise(port: int) -> None:
    """Real traffic: a parametrised route (DB + Redis + business), a 404, a WebSocket exchange."""
    for item in ("AAPL", "MSFT", "TSLA"):
        status, body = get(port, f"/items/{item}")
        assert status == 200, body
    assert get(port, "/definitely/not/here")[0] == 404

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/quotes", open_timeout=10) as ws:
            await ws.send("hello")
            reply = await asyncio.wait_for(ws.recv(), 10)
            assert reply == "quotes:hello"
            await asyncio.wait_for(ws.wait_closed(), 10)

    asyncio.run(talk())


def assert_full_metrics(text: str) -> None:
    http = series(text, "http_server_request_duration_seconds_count")
    routes = {s.labels.get("http_route") for s in http}
    assert "/items/{item_id}" in routes, routes
    assert not any(r and "AAPL" in r for r in routes), f"raw path used as label: {routes}"
    ok = [s for s in http if s.labels.get("http_route") == "/items/{item_id}"]
    assert sum(s.value for s in ok) == 3

    db = series(text, "mystocks_db_query_duration_seconds_count")
    assert any(s.labels["operation"] == "SELECT" and s.value >= 3 for s in db), db
    redis_cmds = series(text, "mystocks_redis_command_duration_seconds_count")
    assert any(s.labels["command"] == "GET" and s.value >= 3 for s in redis_cmds), redis_cmds

    opened = series(text, "mystocks_websocket_connections_opened_total")
    assert [(s.labels["namespace"], s.value) for s in opened] == [("/ws/{room}", 1.0)]
    messages = {(s.labels["direction"], s.value) for s in
                series(text, "mystocks_websocket_messages_total")}
    assert messages == {("received", 1.0), ("sent", 1.0)}, messages
    assert series(text, "mystocks_websocket_connection_duration_seconds_count")[0].value == 1

    system = {s.name for s in samples(text) if s.name.startswith("mystocks_system_")}
    assert {"mystocks_system_cpu_utilization_percent",
            "mystocks_system_memory_usage_bytes"} <= system, system

    orders = series(text, "mystocks_trading_orders_total")
    assert [(s.labels["side"], s.labels["type"], s.labels["status"], s.value) for s in orders] \
        == [("buy", "limit", "filled", 3.0)]

    names = {s.name for s in samples(text)}
    assert not any(n.startswith("http_server_duration") for n in names), "upstream duplicate"
    assert not any(n.startswith("db_client_connections_usage") for n in names), "upstream duplicate"


def metrics_ready(port: int):
    """The system gauges appear after the poller's first run; wait for them."""
    text = scrape(port)
    return text if "mystocks_system_memory_usage_bytes" in text else None


@pytest.mark.parametrize("factory", [False, True], ids=["plain", "factory"])
def test_zero_code_app_reports_everything(app_dir, redis_url, factory):
    port = free_port()
    env = base_env(app_dir, APP_REDIS_URL=redis_url, APP_FACTORY="1" if factory else "0")
    target, extra = ("distro_app:build", ["--factory"]) if factory else ("distro_app:app", [])
    with run_process(uvicorn_argv(target, port, *extra), app_dir, env) as proc:
        proc.wait_port(port)
        exercise(port)
        text = wait_until(lambda: metrics_ready(port), what="system gauges")
        assert_full_metrics(text)
        not_found = [s for s in series(text, "http_server_request_duration_seconds_count")
                     if s.labels["http_response_status_code"] == "404"]
        assert len(not_found) == 1 and not not_found[0].labels.get("http_route")
        assert "Traceback" not in proc.output(), proc.output()


def test_reload_with_standalone_port(app_dir, redis_url):
    """The reloader parent runs the start-up too: it must not bind the metrics port."""
    port, metrics_port = free_port(), free_port()
    env = base_env(app_dir, APP_REDIS_URL=redis_url, OTEL_EXPORTER_PROMETHEUS_PORT=metrics_port,
                   OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1")
    argv = uvicorn_argv("distro_app:app", port, "--reload", "--reload-dir", str(app_dir))
    with run_process(argv, app_dir, env) as proc:
        proc.wait_port(port)
        proc.wait_port(metrics_port)
        exercise(port)
        text = wait_until(lambda: metrics_ready(port), what="system gauges")
        assert_full_metrics(text)
        standalone = wait_until(lambda: metrics_ready(metrics_port), what="standalone gauges")
        assert series(standalone, "mystocks_trading_orders_total")[0].value == 3
        time.sleep(0.5)  # let any late bind attempt log
        output = proc.output()
        assert "address already in use" not in output.lower(), output
        assert "cannot bind" not in output.lower(), output
        assert "Traceback" not in output, output


BAD_SETTINGS = [
    ("OTEL_METRICS_EXPORTER", "bogus", ("prometheus", "otlp", "none")),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "abc", ("positive number",)),
]


@pytest.mark.parametrize("variable,value,accepted", BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_configuration_exits_with_one_line(app_dir, redis_url, variable, value, accepted):
    port = free_port()
    env = base_env(app_dir, APP_REDIS_URL=redis_url, **{variable: value})
    started = time.monotonic()
    try:
        result = subprocess.run(uvicorn_argv("distro_app:app", port), cwd=app_dir, env=env,
                                capture_output=True, text=True, timeout=30,
                                start_new_session=True)
    except subprocess.TimeoutExpired as exc:  # the process kept running: instrumentation lost
        pytest.fail(f"process did not exit on a bad {variable}: {exc.stderr!r}")
    assert time.monotonic() - started < 15
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and value in lines[0]
    assert all(word in lines[0] for word in accepted), lines[0]


@pytest.mark.parametrize("variable,value", [(b[0], b[1]) for b in BAD_SETTINGS])
def test_import_never_fails_on_bad_settings(tmp_path, variable, value):
    env = base_env(tmp_path, **{variable: value})
    code = "import mystocks_otel; mystocks_otel.record_order('buy', 'limit', 'filled'); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=30, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- coexisting with the process: no environment writes, no exits after start-up --------------

def run_instrumented(tmp_path: Path, code: str, timeout: float = 60, **env: str):
    """``opentelemetry-instrument python -c code`` in a clean environment."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([INSTRUMENT, sys.executable, str(script)], cwd=tmp_path,
                          env=base_env(tmp_path, **env), capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def test_the_distro_writes_nothing_into_the_environment(tmp_path):
    """Defaults live in Settings: the process and its children see the user's environment."""
    result = run_instrumented(tmp_path, """
        import json, os, subprocess, sys
        child = subprocess.run([sys.executable, "-c", "import os, json; print(json.dumps(sorted(os.environ)))"],
                               capture_output=True, text=True, env=os.environ.copy()).stdout
        print(json.dumps({"here": sorted(k for k in os.environ if k.startswith("OTEL_")),
                          "child": [k for k in json.loads(child) if k.startswith("OTEL_")]}))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"here": [], "child": []}


def test_no_version_warning_for_the_instrumentations_we_replace(tmp_path):
    """Upstream SQLAlchemy's range is <2.1: we never run it, so the launcher must not say so."""
    import sqlalchemy

    result = run_instrumented(tmp_path, "import sqlalchemy; print(sqlalchemy.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sqlalchemy.__version__
    assert "only instruments" not in result.stderr, result.stderr
    assert result.stderr.strip() == ""


def test_sql_spans_under_the_distro_with_tracing_on(tmp_path):
    result = run_instrumented(tmp_path, """
        import sqlalchemy as sa
        from fastapi import FastAPI
        app = FastAPI()                                   # the distro sets it up (tracing on)
        engine = sa.create_engine("sqlite:///" + "t.db")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 42")
    """, OTEL_TRACES_EXPORTER="console", MYSTOCKS_OTEL_TRACES_KEEP_RATIO="1")  # every trace kept
    assert result.returncode == 0, result.stderr
    assert "only instruments" not in result.stderr
    spans = [json.loads(block) for block in re.findall(r"(?ms)^\{\n.*?^\}$", result.stdout)]
    sql = [s for s in spans if s["attributes"].get("db.system.name") == "sqlite"]
    assert [(s["name"], s["kind"], s["attributes"]["db.query.text"]) for s in sql] \
        == [("SELECT", "SpanKind.CLIENT", "SELECT 42")]


def test_a_bad_setting_after_start_up_never_ends_a_running_process(tmp_path):
    """Settings are validated once, at start-up; an app created later uses those."""
    result = run_instrumented(tmp_path, """
        import os
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        os.environ["MYSTOCKS_OTEL_SLOW_QUERY_SECONDS"] = "abc"   # changed while running
        app = FastAPI()

        @app.get("/ping")
        def ping():
            return "pong"

        client = TestClient(app)
        client.get("/ping")
        print(client.get("/metrics").status_code, "still running")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200 still running"
    assert "configuration error" not in result.stderr


def test_a_failing_set_up_is_logged_once_and_leaves_the_app_working(tmp_path):
    result = run_instrumented(tmp_path, """
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        import mystocks_otel._internal.telemetry

        def broken(app, rt):  # a fault injected into set-up, whatever its cause
            raise RuntimeError("no middleware here")

        mystocks_otel._internal.telemetry.instrument_app = broken
        for n in range(3):
            app = FastAPI()

            @app.get("/ping")
            def ping():
                return "pong"

            print(TestClient(app).get("/ping").json())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['pong'] * 3
    assert result.stderr.count("could not instrument") == 1, result.stderr
    assert "RuntimeError: no middleware here" in result.stderr


class _OTLPSink(http.server.BaseHTTPRequestHandler):
    paths: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).paths.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_fastapi_native_telemetry_configures_itself_beside_the_distro(tmp_path):
    """FastAPI's own OTLP auto-configuration works under the distro (it failed on the
    OTEL_METRICS_EXPORTER=prometheus the distro used to write), and HTTP metrics are
    recorded once: FastAPI's, since its native metrics are active; ours count the rest."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OTLPSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_instrumented(tmp_path, """
            import mystocks_otel
            from fastapi import FastAPI
            from fastapi.testclient import TestClient
            from opentelemetry import metrics, trace
            app = FastAPI()

            @app.get("/items/{n}")
            def item(n: int):
                mystocks_otel.record_order("buy", "market", "filled")
                return n

            with TestClient(app) as client:                   # lifespan: FastAPI auto-configures
                client.get("/items/1")
                body = client.get("/metrics").text
            trace.get_tracer_provider().force_flush()
            metrics.get_meter_provider().force_flush()
            print(type(metrics.get_meter_provider()).__name__, type(trace.get_tracer_provider()).__name__)
            print(sum(l.startswith("http_server_request_duration_seconds_count") for l in body.splitlines()),
                  sum(l.startswith("mystocks_trading_orders_total{") for l in body.splitlines()))
        """, FASTAPI_OTEL_AUTO_CONFIGURE="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "automatic telemetry configuration failed" not in result.stderr, result.stderr
    providers, counts = result.stdout.splitlines()[-2:]
    assert providers == "MeterProvider TracerProvider"  # FastAPI configured both from OTEL_*
    assert counts == "0 1"  # HTTP: FastAPI's alone; our business metrics as usual
    assert {"/v1/traces", "/v1/metrics"} <= set(_OTLPSink.paths)  # FastAPI exported its own
