"""A single-page app: an API router under ``/api`` and the front-end build served by a
``StaticFiles(html=True)`` mount at the root, which catches every other path (404.html for
the unknown ones). Our ``/metrics`` must still be ours, not a static 404."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

SPA = Path(__file__).resolve().parent / "static" / "spa"

app = FastAPI(title="spa")
api = APIRouter(prefix="/api")


@api.get("/quotes/{symbol}")
def quote(symbol: str) -> dict:
    return {"symbol": symbol, "price": 1.0}


app.include_router(api)
app.mount("/", StaticFiles(directory=SPA, html=True), name="spa")

# The root mount's template, in whichever low-cardinality form (never the file's path).
ROOT_MOUNT = ("/{path}", "/{path:path}", "/")

ROUTES = {
    "/api/quotes/AAPL": "/api/quotes/{symbol}",
    "/": ROOT_MOUNT,
    "/index.html": ROOT_MOUNT,
    "/portfolio/42": ROOT_MOUNT,
}


def check(client) -> None:
    assert client.get("/api/quotes/AAPL").json() == {"symbol": "AAPL", "price": 1.0}
    index = client.get("/")
    assert index.status_code == 200 and "<title>Quotes</title>" in index.text
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert client.get("/index.html").content == index.content
    unknown = client.get("/portfolio/42")
    assert unknown.status_code == 404 and "<title>Not found</title>" in unknown.text
    assert set(client.get("/openapi.json").json()["paths"]) == {"/api/quotes/{symbol}"}
