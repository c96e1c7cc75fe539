"""Helpers for core tests. The MeterProvider is process-wide, so each scenario runs
in a fresh interpreter and reports back as JSON on its last stdout line."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

from fastapi import APIRouter, FastAPI, WebSocket
from prometheus_client.parser import text_string_to_metric_families

def make_app():
    """The app every core scenario instruments: an include_router prefix, a 500, a WebSocket."""
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


# Subprocess scenarios get the same make_app, by its source.
PRELUDE = """
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient
import mystocks_otel
from mystocks_otel import setup_telemetry

"""+ inspect.getsource(make_app) + """
def done(**result):
    print(json.dumps(result))
"""


def run_scenario(code: str, env: dict | None = None, timeout: float = 60) -> dict:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MYSTOCKS_OTEL_"))}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"scenario failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def samples(exposition: str) -> list[tuple[str, dict, float]]:
    """(sample name, labels, value) for every sample on a /metrics page."""
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    ]


def series(exposition: str, name: str) -> list[tuple[dict, float]]:
    return [(labels, value) for n, labels, value in samples(exposition) if n == name]
