"""The fixture and capture_metrics() see a module-level app imported at the top of the test file
(issue 14, item 4): HTTP, WebSocket, DB and Redis, exact per test, each test from zero.

``apps.fixture_app`` calls ``setup_telemetry(app)`` and makes its engine and Redis client at
import, i.e. at collection, before any fixture runs.
"""

from __future__ import annotations

import pytest

redis = pytest.importorskip("redis")
pytest.importorskip("sqlalchemy")

from apps.fixture_app import app, cache, engine  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from mystocks_otel import testing  # noqa: E402
from mystocks_otel._internal import runtime, state  # noqa: E402


@pytest.fixture
def redis_pool(redis_url):
    """The app's import-time client, pointed at the session's Redis (same client object)."""
    default, cache.connection_pool = cache.connection_pool, redis.ConnectionPool.from_url(redis_url)
    yield
    cache.connection_pool.disconnect()
    cache.connection_pool = default


def _traffic() -> None:
    with TestClient(app) as client:
        assert client.get("/items/3").json() == {"id": 3}
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"


def _assert_exactly_one_of_each(metrics) -> None:
    route = {"http.route": "/items/{item_id}"}
    assert metrics.count("http.server.request.duration") == 1, metrics.series("http.server.request.duration")
    assert metrics.count("http.server.request.duration", {**route, "http.response.status_code": 200}) == 1
    assert metrics.value("mystocks.websocket.connections_opened") == 1
    assert metrics.count("mystocks.db.query_duration") == 1, metrics.series("mystocks.db.query_duration")
    assert metrics.count("mystocks.db.query_duration", {"operation": "SELECT"}) == 1
    assert metrics.count("mystocks.redis.command_duration") == 1, metrics.series("mystocks.redis.command_duration")
    assert metrics.count("mystocks.redis.command_duration", {"command": "GET"}) == 1


def _assert_zero(metrics) -> None:
    for name in ("http.server.request.duration", "mystocks.db.query_duration",
                 "mystocks.redis.command_duration"):
        assert metrics.count(name) == 0, (name, metrics.series(name))
    assert metrics.value("mystocks.websocket.connections_opened") == 0


def test_first_test_sees_the_module_level_app(mystocks_metrics, redis_pool):
    _assert_zero(mystocks_metrics)
    _traffic()
    _assert_exactly_one_of_each(mystocks_metrics)
    # Met again at their first use: the health probes ping them (outside the counts).
    assert engine in runtime.instrumented("sqlalchemy").engines
    assert cache in runtime.instrumented("redis").clients


def test_second_test_starts_from_zero_and_sees_it_again(mystocks_metrics, redis_pool):
    _assert_zero(mystocks_metrics)
    _traffic()
    _assert_exactly_one_of_each(mystocks_metrics)


def test_capture_metrics_twice_in_one_test(redis_pool):
    for _ in range(2):
        with testing.capture_metrics() as metrics:
            _assert_zero(metrics)
            _traffic()
            _assert_exactly_one_of_each(metrics)


def test_a_set_up_made_in_the_capture_replaces_the_resumed_one(mystocks_metrics, redis_pool, caplog):
    """A test that sets up an app of its own gets its own settings, with no warning (as the first
    set-up of a fresh interpreter), and the module-level app is still measured."""
    import logging

    from fastapi import FastAPI

    from mystocks_otel import setup_telemetry

    assert runtime.current() is None  # the resumed set-up does not count as one
    with caplog.at_level(logging.WARNING, logger="mystocks_otel"):
        setup_telemetry(FastAPI(), slow_query_seconds=0.123)
    assert not [r for r in caplog.records if "already called" in r.getMessage()]
    assert runtime.current().settings.slow_query_seconds == 0.123
    assert runtime.instrumented("sqlalchemy").slow_query_seconds == 0.123
    _traffic()
    _assert_exactly_one_of_each(mystocks_metrics)


def test_without_the_fixture_nothing_is_resumed():
    """Outside a capture the module-level app's set-up is what the last capture left: stopped."""
    assert state.runtime() is None or not state.runtime().adopted
