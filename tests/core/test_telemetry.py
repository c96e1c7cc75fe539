"""setup_telemetry in one process, on the in-memory reader of ``mystocks_otel.testing``.

Each test gets a reset process (the ``mystocks_metrics`` fixture); fork, distro and
start-up exit cases stay in subprocesses (test_setup.py, tests/integration/test_distro.py).
"""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient

import mystocks_otel
from mystocks_otel import catalog, provider, runtime, setup_telemetry
from mystocks_otel.testing import capture_metrics

DURATION = "http.server.request.duration"


def make_app() -> FastAPI:
    app = FastAPI()
    api = APIRouter()

    @api.get("/quotes/{symbol}")
    def quote(symbol: str):
        return {"symbol": symbol}

    app.include_router(api, prefix="/api")  # the label must keep the prefix

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.websocket("/ws/quotes")
    async def feed(websocket: WebSocket):
        await websocket.accept()
        message = await websocket.receive_text()
        await websocket.send_text(message)
        await websocket.send_bytes(b"x")
        await websocket.close()

    return app


# -- the helper itself ---------------------------------------------------------------------


def test_each_capture_starts_from_zero_and_leaves_nothing_running():
    for _ in range(2):
        with capture_metrics() as metrics:
            app = make_app()
            setup_telemetry(app, system_metrics=False)
            mystocks_otel.record_order("buy", "market", "filled")
            TestClient(app).get("/api/quotes/A")
            assert metrics.value("mystocks.trading.orders", {"side": "buy"}) == 1
            assert metrics.count(DURATION, {"http.route": "/api/quotes/{symbol}"}) == 1
            assert runtime.current() is not None
        assert runtime.current() is None and provider.current() is None
        assert runtime.library_hooks() is None


def test_points_filter_by_attributes_and_reject_unknown_names(mystocks_metrics):
    mystocks_otel.record_order("buy", "market", "filled")
    mystocks_otel.record_order("sell", "limit", "rejected")
    assert mystocks_metrics.value("mystocks.trading.orders") == 2
    assert mystocks_metrics.value("mystocks.trading.orders", {"side": "sell"}) == 1
    assert mystocks_metrics.value("mystocks.trading.orders", {"side": "nope"}) == 0
    with pytest.raises(KeyError):
        mystocks_metrics.points("mystocks.trading.order")  # a typo fails loudly
    with pytest.raises(TypeError, match="histogram"):
        mystocks_otel.record_db_query("SELECT", 0.01)
        mystocks_metrics.value("mystocks.db.query_duration")
