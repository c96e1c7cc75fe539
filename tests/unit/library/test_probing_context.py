"""runtime.probing(): what runs inside it (the poller's tasks) records no DB or Redis metric and no
span (issue 14, item 3); outside it, the same calls count. No poller timing involved."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from mystocks_otel import record_order  # noqa: E402
from mystocks_otel._internal import runtime, state  # noqa: E402
from mystocks_otel.config import Settings  # noqa: E402


def test_sql_inside_probing_is_not_recorded(mystocks_metrics):
    runtime.instrument("sqlalchemy", Settings())
    runtime.instrumented("sqlalchemy").trace(mystocks_metrics.tracer_provider)
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        with runtime.probing():
            assert state.PROBING.get() is True
            conn.exec_driver_sql("SELECT 1")
            with pytest.raises(OperationalError):
                conn.exec_driver_sql("SELECT * FROM missing_table")
        assert state.PROBING.get() is False
        assert mystocks_metrics.count("mystocks.db.query_duration") == 0
        assert mystocks_metrics.value("mystocks.db.query_errors") == 0
        assert mystocks_metrics.spans() == []
        conn.exec_driver_sql("SELECT 1")
        with pytest.raises(OperationalError):
            conn.exec_driver_sql("SELECT * FROM missing_table")
    assert mystocks_metrics.count("mystocks.db.query_duration", {"operation": "SELECT"}) == 1
    assert mystocks_metrics.value("mystocks.db.query_errors") == 1
    assert len(mystocks_metrics.spans()) == 2


def test_redis_inside_probing_is_not_recorded(mystocks_metrics, redis_url):
    redis = pytest.importorskip("redis")
    runtime.instrument("redis", Settings())
    # A counter of the SDK's own: with none recorded, the in-memory reader leaves our
    # histograms out (sdk_bridge.join needs a resource to join them to).
    record_order("buy", "market", "accepted")
    client = redis.Redis.from_url(redis_url)
    with runtime.probing():
        client.ping()
        client.info()
    assert mystocks_metrics.count("mystocks.redis.command_duration") == 0
    client.ping()
    assert mystocks_metrics.count("mystocks.redis.command_duration") == 1
    assert mystocks_metrics.count("mystocks.redis.command_duration", {"command": "PING"}) == 1


def test_the_poller_runs_its_tasks_as_probes():
    seen = []
    runtime.Poller(60, [lambda: seen.append(state.PROBING.get())]).run_once()
    assert seen == [True] and state.PROBING.get() is False
