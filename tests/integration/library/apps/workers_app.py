"""An app for several workers: each answer says which worker process served it.

With ``WORKERS_APP_ZERO_CODE=1`` it has no telemetry code (run it under opentelemetry-instrument).
"""

import os
import time

from fastapi import FastAPI

import mystocks_otel

app = FastAPI()
if os.environ.get("WORKERS_APP_ZERO_CODE") != "1":
    mystocks_otel.setup_telemetry(app)


@app.get("/work/{n}")
async def work(n: int, block: float = 0.0):
    """``block`` holds this worker's event loop (deliberately): meanwhile the kernel hands
    new connections to the other workers, so a test's requests spread over all of them."""
    mystocks_otel.record_order("buy", "market", "accepted")
    time.sleep(min(block, 0.1))
    return {"n": n, "pid": os.getpid()}
