"""Zero-code instrumentation: ``opentelemetry-instrument uvicorn app:app`` in real processes.

The app (apps/distro_app.py) never calls setup_telemetry; the distro must make it
report HTTP, WebSocket, SQLAlchemy, Redis, system and business metrics, with no
duplicate upstream series.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from harness import base_env, get, run_process, samples, scrape, series, uvicorn_argv
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
