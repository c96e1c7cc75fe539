"""As test_testing_module_app.py, with the app's module imported whole (``import app as m``)."""

from __future__ import annotations

import pytest

redis = pytest.importorskip("redis")
pytest.importorskip("sqlalchemy")

import apps.fixture_app as fixture_app  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from mystocks_otel.testing import capture_metrics  # noqa: E402


@pytest.fixture
def redis_pool(redis_url):
    cache = fixture_app.cache
    default, cache.connection_pool = cache.connection_pool, redis.ConnectionPool.from_url(redis_url)
    yield
    cache.connection_pool.disconnect()
    cache.connection_pool = default


@pytest.mark.parametrize("run", [1, 2])
def test_the_fixture_counts_exactly_from_zero(mystocks_metrics, redis_pool, run):
    assert mystocks_metrics.count("mystocks.db.query_duration") == 0
    with TestClient(fixture_app.app) as client:
        assert client.get(f"/items/{run}").json() == {"id": run}
    assert mystocks_metrics.count("http.server.request.duration") == 1
    assert mystocks_metrics.count("mystocks.db.query_duration") == 1
    assert mystocks_metrics.count("mystocks.redis.command_duration") == 1


def test_capture_metrics_finds_it_in_the_callers_module(redis_pool):
    for run in (1, 2):
        with capture_metrics() as metrics:
            with TestClient(fixture_app.app) as client:
                client.get(f"/items/{run}")
            assert metrics.count("http.server.request.duration") == 1
            assert metrics.count("mystocks.db.query_duration") == 1
            assert metrics.count("mystocks.redis.command_duration") == 1
