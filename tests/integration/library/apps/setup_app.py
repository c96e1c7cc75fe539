"""A small app that instruments itself with ``setup_telemetry`` (run with plain uvicorn)."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

import mystocks_otel


@asynccontextmanager
async def lifespan(_app):
    yield
    if os.environ.get("APP_SHUTDOWN_HOOK") == "1":
        handle.shutdown()


app = FastAPI(lifespan=lifespan)
handle = mystocks_otel.setup_telemetry(app)


@app.get("/ping/{n}")
def ping(n: int):
    mystocks_otel.record_order("buy", "market", "accepted")
    return {"n": n}


@app.get("/fast")
async def fast():
    return {"ok": True}
