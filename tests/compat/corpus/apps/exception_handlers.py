"""Custom exception handlers: a domain error, ``HTTPException`` and validation errors
rendered the app's way, and a catch-all ``Exception`` handler for 500s."""

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class OutOfStock(Exception):
    def __init__(self, sku: str):
        self.sku = sku


app = FastAPI(title="errors")


@app.exception_handler(OutOfStock)
async def out_of_stock(request: Request, exc: OutOfStock):
    return JSONResponse({"error": "out_of_stock", "sku": exc.sku}, status_code=409)


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException):
    return PlainTextResponse(f"http {exc.status_code}: {exc.detail}", status_code=exc.status_code,
                             headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError):
    fields = sorted(".".join(str(p) for p in error["loc"]) for error in exc.errors())
    return JSONResponse({"error": "invalid", "fields": fields}, status_code=400)


async def unhandled(request: Request, exc: Exception):
    return JSONResponse({"error": "internal", "type": type(exc).__name__}, status_code=500)


app.add_exception_handler(Exception, unhandled)


@app.get("/stock/{sku}")
def stock(sku: str) -> dict:
    if sku == "ZZZ":
        raise OutOfStock(sku)
    return {"sku": sku, "count": 3}


@app.get("/teapot")
async def teapot():
    raise HTTPException(418, "short and stout", headers={"X-Teapot": "yes"})


@app.get("/quantity")
def quantity(n: int) -> dict:
    return {"n": n}


@app.get("/boom")
def boom():
    raise RuntimeError("database fell over")


@app.get("/boom-async")
async def boom_async():
    raise KeyError("missing")


ROUTES = {
    "/stock/A1": "/stock/{sku}", "/stock/ZZZ": "/stock/{sku}", "/teapot": "/teapot",
    "/quantity": "/quantity", "/boom": "/boom", "/boom-async": "/boom-async", "/nope": None,
}


def check(client) -> None:
    assert client.get("/stock/A1").json() == {"sku": "A1", "count": 3}
    gone = client.get("/stock/ZZZ")
    assert (gone.status_code, gone.json()) == (409, {"error": "out_of_stock", "sku": "ZZZ"})
    pot = client.get("/teapot")
    assert (pot.status_code, pot.text) == (418, "http 418: short and stout")
    assert pot.headers["x-teapot"] == "yes"
    missing = client.get("/nope")
    assert (missing.status_code, missing.text) == (404, "http 404: Not Found")
    assert client.get("/quantity", params={"n": "3"}).json() == {"n": 3}
    bad = client.get("/quantity", params={"n": "many"})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid", "fields": ["query.n"]})
    no_n = client.get("/quantity")
    assert (no_n.status_code, no_n.json()) == (400, {"error": "invalid", "fields": ["query.n"]})
    # Starlette re-raises after the 500 handler answered, and uvicorn then drops the
    # connection: ask for a fresh one so the next request does not meet a reset.
    once = {"Connection": "close"}
    boom = client.get("/boom", headers=once)
    assert (boom.status_code, boom.json()) == (500, {"error": "internal", "type": "RuntimeError"})
    boom2 = client.get("/boom-async", headers=once)
    assert (boom2.status_code, boom2.json()) == (500, {"error": "internal", "type": "KeyError"})


def check_log(output: str) -> None:
    """Starlette re-raises after the 500 handler answered: the server logs each one once."""
    assert output.count("RuntimeError: database fell over") == 1, output
    assert output.count("KeyError: 'missing'") == 1, output
