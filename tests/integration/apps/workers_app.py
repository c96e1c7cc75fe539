"""An app for several workers: each answer says which worker process served it."""

import os

from fastapi import FastAPI

import mystocks_otel

app = FastAPI()
mystocks_otel.setup_telemetry(app)


@app.get("/work/{n}")
def work(n: int):
    mystocks_otel.record_order("buy", "market", "accepted")
    return {"n": n, "pid": os.getpid()}
