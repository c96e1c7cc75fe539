"""Our contrib-style instrumentors, the names that disable them, and the process-wide settings
of ``setup_telemetry`` (a later set-up with other settings says so)."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import mystocks_otel
from core_helpers import make_app
from mystocks_otel import config, integrations, setup_telemetry
from mystocks_otel._internal import runtime
from mystocks_otel.integrations.fastapi import MyStocksFastAPIInstrumentor
from mystocks_otel.integrations.redis import MyStocksRedisInstrumentor
from mystocks_otel.integrations.sqlalchemy import MyStocksSQLAlchemyInstrumentor
from mystocks_otel.testing import capture_metrics

QUIET = {"system_metrics": False, "probe_interval_seconds": 3600}
HTTP = "http.server.request.duration"


def test_entry_points_name_ours_after_the_upstream_instrumentations_they_replace():
    ours = {ep.name: ep.value for ep in entry_points(group="opentelemetry_instrumentor")
            if ep.value.startswith("mystocks_otel.")}
    assert ours == integrations.ENTRY_POINTS
    assert set(integrations.ALIASES) == {"mystocks_fastapi", "mystocks_sqlalchemy", "mystocks_redis"}
    for name in ours:
        instrumentor = integrations.load(name)
        assert isinstance(instrumentor, BaseInstrumentor)
        assert type(instrumentor).__name__.startswith("MyStocks")  # never upstream's class names
        assert instrumentor.instrumentation_dependencies()
        assert integrations.load(name) is instrumentor  # a singleton, as contrib's are


def test_disabled_names_are_read_as_the_launcher_reads_them_with_our_aliases():
    settings = config.load({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": " requests, mystocks_redis ,sqlalchemy"})
    assert settings.disabled_instrumentations == {"requests", "redis", "sqlalchemy"}
    assert not settings.instrumentation_enabled("redis")
    assert settings.instrumentation_enabled("fastapi")
    everything = config.load({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"})
    assert not any(everything.instrumentation_enabled(n) for n in integrations.ENTRY_POINTS)


def test_instrument_and_uninstrument_are_symmetric(tmp_path):
    import redis.client
    from sqlalchemy.engine import Engine

    sqlalchemy_, redis_ = MyStocksSQLAlchemyInstrumentor(), MyStocksRedisInstrumentor()
    settings = config.Settings(slow_query_seconds=0.25)
    with capture_metrics():
        sqlalchemy_.instrument(settings=settings)
        redis_.instrument()
        try:
            hooks = sqlalchemy_.hooks
            assert hooks.slow_query_seconds == 0.25
            assert sa.event.contains(Engine, "before_cursor_execute", hooks._before)
            assert hasattr(redis.client.Redis.execute_command, "__wrapped__")
        finally:
            redis_.uninstrument()
            sqlalchemy_.uninstrument()
        assert not sa.event.contains(Engine, "before_cursor_execute", hooks._before)
        assert not hasattr(redis.client.Redis.execute_command, "__wrapped__")
        assert sqlalchemy_.hooks is None and not sqlalchemy_.is_instrumented_by_opentelemetry
        engine = sa.create_engine(f"sqlite:///{tmp_path}/t.db")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert sqlalchemy_.engines == []  # nothing seen once uninstrumented


@pytest.mark.parametrize("value", ["sqlalchemy", "mystocks_sqlalchemy"])
def test_setup_telemetry_honours_the_disabled_names_too(monkeypatch, tmp_path, value):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", value)
    with capture_metrics() as metrics:
        app = make_app()
        setup_telemetry(app, **QUIET)
        assert runtime.instrumented("sqlalchemy") is None
        assert runtime.instrumented("redis") is not None and runtime.instrumented("fastapi") is not None
        engine = sa.create_engine(f"sqlite:///{tmp_path}/t.db")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        TestClient(app).get("/api/quotes/A")
        assert metrics.count("mystocks.db.query_duration") == 0
        assert metrics.count(HTTP) == 1


def test_fastapi_disabled_still_serves_the_endpoints_and_records_no_http_metric():
    with capture_metrics() as metrics:
        app = make_app()
        setup_telemetry(app, disabled_instrumentations=frozenset({"fastapi"}), **QUIET)
        client = TestClient(app)
        mystocks_otel.record_order("buy", "market", "filled")
        assert client.get("/api/quotes/A").status_code == 200
        with client.websocket_connect("/ws/quotes") as ws:
            ws.send_text("hi")
            ws.receive_text()
        page = client.get("/metrics")
        assert page.status_code == 200 and "mystocks_trading_orders_total{" in page.text
        assert metrics.count(HTTP) == 0
        assert metrics.value("mystocks.websocket.connections_opened") == 0
        assert not MyStocksFastAPIInstrumentor().recording


def test_apps_run_instrumented_without_sqlalchemy_or_redis(monkeypatch):
    """Installed here, but not importable: the app is instrumented all the same."""
    for name in [m for m in sys.modules if m == "sqlalchemy" or m.startswith(("sqlalchemy.", "redis"))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.setitem(sys.modules, "redis", None)
    with capture_metrics() as metrics:
        app = make_app()
        setup_telemetry(app, **QUIET)
        assert runtime.instrumented("sqlalchemy") is None
        assert TestClient(app).get("/api/quotes/A").status_code == 200
        assert metrics.count(HTTP) == 1
        assert runtime.current().probe_health()["components"] == {"exporter": True}


# -- one process, one set of settings -----------------------------------------------------------

def _setup_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "setup_telemetry was already called" in r.getMessage()]


def test_a_second_set_up_with_other_options_says_which_in_one_line(caplog):
    caplog.set_level(logging.WARNING, logger="mystocks_otel")
    with capture_metrics():
        setup_telemetry(make_app(), **QUIET)
        second = setup_telemetry(make_app(), slow_query_seconds=0.2, cardinality_limit=50, **QUIET)
        (line,) = _setup_warnings(caplog)
        assert "\n" not in line
        assert "slow_query_seconds" in line and "cardinality_limit" in line
        assert "probe_interval_seconds" not in line
        assert second.settings.slow_query_seconds == config.Settings.slow_query_seconds  # ignored


def test_a_second_set_up_with_the_same_options_is_quiet(caplog):
    caplog.set_level(logging.WARNING, logger="mystocks_otel")
    with capture_metrics():
        setup_telemetry(make_app(), slow_query_seconds=0.2, **QUIET)
        setup_telemetry(make_app(), slow_query_seconds=0.2, **QUIET)
        app = make_app()
        setup_telemetry(app, slow_query_seconds=0.2, **QUIET)
        setup_telemetry(app, slow_query_seconds=0.2, **QUIET)  # the same app again: a no-op
    assert _setup_warnings(caplog) == []


def test_after_shutdown_the_next_set_up_is_a_first_one_again(caplog):
    caplog.set_level(logging.WARNING, logger="mystocks_otel")
    with capture_metrics():
        setup_telemetry(make_app(), **QUIET).shutdown()
        handle = setup_telemetry(make_app(), slow_query_seconds=0.3, **QUIET)
        assert handle.settings.slow_query_seconds == 0.3
    assert _setup_warnings(caplog) == []
