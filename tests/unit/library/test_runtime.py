"""The process-wide runtime (provider, instrumentors, poller, spans) in one process, on the
in-memory reader of ``mystocks_otel.testing``. Fork cases stay in subprocesses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mystocks_otel._internal import provider, runtime
from mystocks_otel.testing import capture_metrics

QUERIES = "mystocks.db.query_duration"
SLOW = "mystocks.db.slow_queries"


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/runtime.db")

    @sa.event.listens_for(engine, "connect")
    def add_sleep(dbapi_connection, _record):  # SELECT pg_sleep(s) on SQLite too
        import time

        dbapi_connection.create_function("pg_sleep", 1, time.sleep)

    yield engine
    engine.dispose()


def _settings(capture, **overrides):
    return capture.settings.with_overrides(
        **{"system_metrics": False, "probe_interval_seconds": 3600, **overrides})


def test_the_runtime_starts_once_and_later_starts_only_add_engines(engine):
    with capture_metrics() as metrics:
        first = runtime.start(_settings(metrics))
        assert runtime.current() is first and first.state is provider.current()
        again = runtime.start(_settings(metrics, slow_query_seconds=9), engines=[engine])
        assert again is first and first.settings.slow_query_seconds != 9
        assert engine in runtime.instrumented("sqlalchemy").engines
    assert runtime.current() is None and provider.current() is None


def test_stop_removes_the_hooks_and_the_next_start_uses_its_own_settings(engine):
    with capture_metrics() as metrics:
        runtime.start(_settings(metrics, slow_query_seconds=0.01))
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(0.02)")
        assert metrics.value(SLOW, {"operation": "SELECT"}) == 1
        runtime.stop()
        assert runtime.instrumented("sqlalchemy") is None
        with engine.connect() as conn:  # no hook: not measured
            conn.exec_driver_sql("SELECT pg_sleep(0.02)")
        assert metrics.count(QUERIES) == 1

        runtime.start(_settings(metrics, slow_query_seconds=5))
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(0.02)")
        assert metrics.count(QUERIES) == 2
        assert metrics.value(SLOW, {"operation": "SELECT"}) == 1  # 0.02 s is not slow any more


def test_one_poll_updates_pool_health_and_system_gauges(engine):
    with capture_metrics() as metrics:
        rt = runtime.start(_settings(metrics, system_metrics=True), engines=[engine])
        rt.poller.stop()  # its thread polls once at start: let it finish, then poll by hand
        held = engine.connect()
        try:
            rt.poller.run_once()
        finally:
            held.close()
        pool = metrics.points("mystocks.db.connections_active")
        assert [(p.attributes["pool"], p.value) for p in pool] == [("sqlite/runtime.db", 1)]
        assert metrics.value("mystocks.health.component_status", {"component": "database"}) == 1
        assert metrics.value("mystocks.health.dependency_availability", {"dependency": "sqlite"}) == 1
        assert metrics.value("mystocks.system.memory_usage", {"scope": "process"}) > 0


def test_tracing_adds_sql_spans_and_stopping_removes_them(engine):
    with capture_metrics() as metrics:
        runtime.start(_settings(metrics), tracer_provider=metrics.tracer_provider)
        assert runtime.current().tracing
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        (span,) = metrics.spans()
        assert span.attributes["db.system.name"] == "sqlite"
        assert span.attributes["db.query.text"] == "SELECT 1"

        runtime.stop()
        runtime.start(_settings(metrics))  # tracing off now
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert len(metrics.spans()) == 1 and not runtime.current().tracing


def test_upstream_redis_spans_are_undone_with_the_sql_ones():
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    with capture_metrics() as metrics:
        runtime.start(_settings(metrics), tracer_provider=metrics.tracer_provider)
        assert RedisInstrumentor().is_instrumented_by_opentelemetry
        sqlalchemy, redis = runtime.instrumented("sqlalchemy"), runtime.instrumented("redis")
        assert sqlalchemy.hooks.tracing
        redis.untrace()
        sqlalchemy.untrace()
        assert not RedisInstrumentor().is_instrumented_by_opentelemetry
        assert not sqlalchemy.hooks.tracing


def test_stopping_a_tracing_runtime_stops_the_upstream_spans_too():
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    with capture_metrics() as metrics:
        runtime.start(_settings(metrics), tracer_provider=metrics.tracer_provider)
        assert RedisInstrumentor().is_instrumented_by_opentelemetry
        runtime.stop()  # telemetry.shutdown(): no span may go on to a stopped tracer provider
        assert not RedisInstrumentor().is_instrumented_by_opentelemetry
