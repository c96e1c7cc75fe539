"""Fixtures for the demo tests: an uninstrumented demo app on a private SQLite file and a
throwaway Redis (the demo writes and flushes keys, so never the shared one).

In-process apps are built with ``instrument=False``: the MeterProvider is process-wide, so the
test that reads /metrics runs the instrumented demo in a subprocess (test_demo_metrics.py).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mystocks_otel_dev.demo.app import create_app
from mystocks_otel_dev.demo.settings import DemoSettings


@pytest.fixture
def demo_settings(tmp_path, throwaway_redis) -> DemoSettings:
    return DemoSettings(
        database_url=f"sqlite:///{tmp_path / 'demo.db'}",
        redis_url=throwaway_redis["url"],
        tick_seconds=0.05,
        health_seconds=0.2,
    )


@pytest.fixture
def client(demo_settings):
    app = create_app(instrument=False, settings=demo_settings)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def demo(client):
    """The app's DemoState (faults, cache, database, simulator, hub)."""
    return client.app.state.demo
