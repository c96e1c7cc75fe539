"""A minimal app with no telemetry code at all (for opentelemetry-instrument)."""

from fastapi import FastAPI

import mystocks_otel

app = FastAPI()


@app.get("/ping/{n}")
def ping(n: int):
    mystocks_otel.record_order("buy", "market", "accepted")
    return {"n": n}
