"""An app for several workers: each answer says which worker process served it.

With ``WORKERS_APP_ZERO_CODE=1`` it has no telemetry code (run it under opentelemetry-instrument).
"""

import os

from fastapi import FastAPI

import mystocks_otel

app = FastAPI()
if os.environ.get("WORKERS_APP_ZERO_CODE") != "1":
    mystocks_otel.setup_telemetry(app)


@app.get("/work/{n}")
def work(n: int):
    mystocks_otel.record_order("buy", "market", "accepted")
    return {"n": n, "pid": os.getpid()}
