"""The usual middleware stack: a ``BaseHTTPMiddleware`` (class and decorator forms),
CORS and GZip. The class middleware can answer by itself (a blocked client), and CORS
answers pre-flight requests before any route is matched."""

import time

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware

ORIGIN = "https://frontend.example"


class GateMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        if request.headers.get("x-client") == "blocked":
            return JSONResponse({"detail": "client blocked"}, status_code=403)
        response = await call_next(request)
        response.headers["X-Gate"] = "passed"
        return response


app = FastAPI(title="middleware")
app.add_middleware(GateMiddleware)
app.add_middleware(GZipMiddleware, minimum_size=500)
app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_credentials=True,
                   allow_methods=["GET", "POST"], allow_headers=["X-Token"],
                   expose_headers=["X-Gate"])


@app.middleware("http")
async def process_time(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
    return response


VOLATILE_HEADERS = {"x-process-time"}


@app.get("/small")
def small() -> dict:
    return {"size": "small"}


@app.get("/large")
def large() -> dict:
    return {"rows": [{"n": i, "text": "lorem ipsum dolor sit amet"} for i in range(100)]}


@app.post("/echo")
async def echo(request: Request) -> dict:
    return {"got": await request.json()}


ROUTES = {
    "/small": "/small",
    "GET /small 403": None,  # answered by the gate middleware before routing
    "/large": "/large",
    "/echo": "/echo",
    "OPTIONS /echo": None,  # CORS answers pre-flights before routing
}


def check(client) -> None:
    small_ = client.get("/small")
    assert small_.json() == {"size": "small"}
    assert small_.headers["x-gate"] == "passed"
    assert float(small_.headers["x-process-time"]) >= 0
    # The gate streams what it passes on, and GZip compresses any streamed body.
    assert small_.headers["content-encoding"] == "gzip"
    assert small_.headers["vary"] == "Accept-Encoding, Origin"

    big = client.get("/large", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert big.headers["vary"] == "Accept-Encoding, Origin"
    assert len(big.json()["rows"]) == 100
    plain = client.get("/large", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.json()["rows"]) == 100

    blocked = client.get("/small", headers={"X-Client": "blocked"})
    assert (blocked.status_code, blocked.json()) == (403, {"detail": "client blocked"})
    assert "x-gate" not in blocked.headers

    preflight = client.options("/echo", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-Token"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = client.options("/echo", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert (refused.status_code, refused.text) == (400, "Disallowed CORS origin")

    cross = client.post("/echo", json={"a": 1}, headers={"Origin": ORIGIN, "X-Token": "t"})
    assert cross.json() == {"got": {"a": 1}}
    assert cross.headers["access-control-allow-origin"] == ORIGIN
    assert cross.headers["access-control-expose-headers"] == "X-Gate"
    assert cross.headers["access-control-allow-credentials"] == "true"
