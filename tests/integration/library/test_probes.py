"""The health probes (SELECT 1, PING, INFO) stay out of the app's DB and Redis numbers (issue 14, item 3).

With no traffic and a 1 s probe interval, several probe rounds run (counted by the health
check duration histogram) while the query and command metrics stay at zero and no span is
made; the probes' results still set the health gauges. One request that runs one query and
one command counts exactly one of each.
"""

from __future__ import annotations

import pytest
from support import free_port, wait_until

pytest.importorskip("sqlalchemy")
redis = pytest.importorskip("redis")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from mystocks_otel import setup_telemetry  # noqa: E402
from mystocks_otel._internal import runtime  # noqa: E402

ROUNDS = 3  # probe rounds to wait for (1 s apart)

APP_NUMBERS = ("mystocks.db.query_duration", "mystocks.redis.command_duration")
APP_COUNTERS = ("mystocks.db.slow_queries", "mystocks.db.query_errors", "mystocks.redis.command_errors")


def _app(engine, client, metrics):
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int):
        with engine.connect() as conn:
            found = conn.execute(text("SELECT :id"), {"id": item_id}).scalar()
        client.get(f"probe-test:{item_id}")
        return {"id": found}

    # slow_query_seconds=1e-9: every query the hooks see counts as slow too
    setup_telemetry(app, engines=[engine], probe_interval_seconds=1, slow_query_seconds=1e-9,
                    tracer_provider=metrics.tracer_provider)
    return app


def _rounds(metrics) -> int:
    return min(metrics.count("mystocks.health.check_duration", {"component": "database"}),
               metrics.count("mystocks.health.check_duration", {"component": "cache"}))


def test_probes_are_not_counted_as_the_apps_queries(mystocks_metrics, redis_url, tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'probes.db'}")
    client = redis.Redis.from_url(redis_url)
    _app(engine, client, mystocks_metrics)
    engine.connect().close()  # the probe pings pools in use only; this runs no statement
    runtime.instrumented("redis").hooks.clients.add(client)  # as if the app had used it
    assert mystocks_metrics.count("mystocks.db.query_duration") == 0

    wait_until(lambda: _rounds(mystocks_metrics) >= ROUNDS, timeout=30, what=f"{ROUNDS} probe rounds")

    for name in APP_NUMBERS:
        assert mystocks_metrics.count(name) == 0, (name, mystocks_metrics.points(name))
    for name in APP_COUNTERS:
        assert mystocks_metrics.value(name) == 0, (name, mystocks_metrics.points(name))
    assert mystocks_metrics.spans() == []
    # The probes' own results still feed the health gauges.
    assert mystocks_metrics.value("mystocks.health.dependency_availability", {"dependency": "sqlite"}) == 1
    assert mystocks_metrics.value("mystocks.health.dependency_availability", {"dependency": "redis"}) == 1
    assert mystocks_metrics.value("mystocks.health.component_status", {"component": "database"}) == 1
    assert mystocks_metrics.value("mystocks.health.component_status", {"component": "cache"}) == 1
    # INFO still feeds the cache gauges.
    assert mystocks_metrics.points("mystocks.cache.memory_usage")


def test_one_request_counts_one_query_and_one_command(mystocks_metrics, redis_url, tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    client = redis.Redis.from_url(redis_url)
    app = _app(engine, client, mystocks_metrics)
    with TestClient(app) as http:
        assert http.get("/items/7").json() == {"id": 7}
    # Probe rounds run after the request, against the pool and the client it used.
    wait_until(lambda: _rounds(mystocks_metrics) >= ROUNDS, timeout=30, what=f"{ROUNDS} probe rounds")

    assert mystocks_metrics.count("mystocks.db.query_duration") == 1
    assert mystocks_metrics.count("mystocks.db.query_duration", {"operation": "SELECT"}) == 1
    assert mystocks_metrics.value("mystocks.db.slow_queries") == 1
    assert mystocks_metrics.count("mystocks.redis.command_duration") == 1
    assert mystocks_metrics.count("mystocks.redis.command_duration", {"command": "GET"}) == 1
    assert mystocks_metrics.value("mystocks.db.query_errors") == 0
    assert mystocks_metrics.value("mystocks.redis.command_errors") == 0
    sql = [s for s in mystocks_metrics.spans() if s.attributes.get("db.system.name") == "sqlite"]
    assert [s.attributes["db.query.text"] for s in sql] == ["SELECT ?"]
    redis_spans = [s for s in mystocks_metrics.spans() if s.attributes.get("db.system") == "redis"
                   or s.attributes.get("db.system.name") == "redis"]
    assert len(redis_spans) == 1, [s.name for s in redis_spans]


def test_a_failing_probe_is_health_only(mystocks_metrics, tmp_path):
    """A probe against a Redis that is not there sets the gauges to 0 and counts no command error."""
    client = redis.Redis(port=free_port(), socket_timeout=1, socket_connect_timeout=1)
    engine = create_engine(f"sqlite:///{tmp_path / 'down.db'}")
    _app(engine, client, mystocks_metrics)
    runtime.instrumented("redis").hooks.clients.add(client)
    wait_until(lambda: mystocks_metrics.count("mystocks.health.check_duration", {"component": "cache"}) >= 2,
               timeout=30, what="2 probe rounds")
    assert mystocks_metrics.value("mystocks.health.dependency_availability", {"dependency": "redis"}) == 0
    assert mystocks_metrics.value("mystocks.redis.command_errors") == 0
    assert mystocks_metrics.count("mystocks.redis.command_duration") == 0
