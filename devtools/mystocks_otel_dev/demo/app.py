"""Build the demo MyStocks API.

``create_app()`` instruments it with ``setup_telemetry`` first, then everything that talks to a
database or Redis is created in the lifespan, after set-up, so SQLAlchemy and redis-py are
instrumented without being passed in. ``create_plain_app()`` is the same app with no telemetry
call, for ``opentelemetry-instrument`` (zero-code) runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

import mystocks_otel as otel

from mystocks_otel.alert_webhook import alert_webhook_router
from . import settings as demo_settings
from .cache import Cache, open_backend
from .db import TABLES, Database, quotes
from .faults import DependencyDown, Faults
from .health import HealthMonitor
from .market import Hub, MarketSimulator
from .routes import admin, quotes as quote_routes, trading, users

log = logging.getLogger("mystocks_otel_dev.demo")
SHUTDOWN_TIMEOUT = 5.0


@dataclass
class DemoState:
    """Everything one app owns. The connected parts are set in the lifespan."""

    settings: demo_settings.DemoSettings
    faults: Faults = field(default_factory=Faults)
    hub: Hub = field(default_factory=Hub)
    telemetry: object | None = None
    database: Database | None = None
    cache: Cache | None = None
    simulator: MarketSimulator | None = None
    health: HealthMonitor | None = None


def _load_prices(database: Database) -> dict[str, float]:
    with database.connect(slow=False) as conn:
        return {row.symbol: row.price for row in conn.execute(select(quotes.c.symbol, quotes.c.price))}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    demo: DemoState = app.state.demo
    cfg = demo.settings
    demo.database = Database(cfg.database_url, demo.faults)
    await asyncio.to_thread(demo.database.open)
    backend = await asyncio.to_thread(
        open_backend, cfg.redis_url, connect_timeout=cfg.redis_connect_timeout,
        socket_timeout=cfg.redis_socket_timeout, max_keys=cfg.memory_cache_size)
    demo.cache = Cache(backend, demo.faults, cfg.key_prefix)
    prices = await asyncio.to_thread(_load_prices, demo.database)
    demo.simulator = MarketSimulator(demo.database, demo.faults, demo.hub, prices, cfg.tick_seconds)
    demo.health = HealthMonitor(demo.database, demo.cache, demo.simulator, cfg.health_seconds)
    tasks = [asyncio.create_task(demo.simulator.run(), name="mystocks-demo-market"),
             asyncio.create_task(demo.health.run(), name="mystocks-demo-health")]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
        demo.cache.close()
        demo.database.close()


async def _dependency_down(_request: Request, exc: DependencyDown) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "dependency": exc.dependency}, status_code=503)


def _telemetry_options() -> dict:
    # Name the service and label the demo's own tables, unless the operator chose them.
    options = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        options["service_name"] = demo_settings.SERVICE_NAME
    if not os.environ.get("MYSTOCKS_OTEL_DB_TABLES"):
        options["db_tables"] = frozenset(TABLES)
    return options


def create_app(instrument: bool = True, settings: demo_settings.DemoSettings | None = None) -> FastAPI:
    app = FastAPI(
        title="MyStocks demo API",
        description="A small stock-market API to instrument, load and break (see /admin/faults).",
        version="0.1.0",
        lifespan=lifespan,
    )
    telemetry = otel.setup_telemetry(app, **_telemetry_options()) if instrument else None
    settings = settings or demo_settings.load()
    app.state.demo = DemoState(settings=settings, faults=Faults(settings.faults_file), telemetry=telemetry)
    app.add_exception_handler(DependencyDown, _dependency_down)
    for router in (quote_routes.router, trading.router, users.router):
        app.include_router(router)  # /api prefix and fault dependency: see routes/common.py
    app.include_router(quote_routes.ws_router)
    app.include_router(admin.router)
    if not any(getattr(route, "path", None) == "/alerts/webhook" for route in app.routes):
        # Alertmanager's webhook receiver -> the alert-lifecycle metrics (unless set-up added it).
        app.include_router(alert_webhook_router(app.state.demo.settings.alert_webhook_token,
                                                allow_unauthenticated=True))  # a loopback demo: open without a token
    return app


def create_plain_app() -> FastAPI:
    """The demo without a telemetry call (``uvicorn --factory mystocks_otel_dev.demo.app:create_plain_app``)."""
    return create_app(instrument=False)
