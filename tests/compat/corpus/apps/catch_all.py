"""A front-end fallback route, ``@app.get("/{full_path:path}")``: every path the API does
not claim returns the single-page app's HTML, ``/metrics`` included.

The host keeps every path it routes, so our endpoints cannot live on its port: a start-up
line says so, and with ``OTEL_EXPORTER_PROMETHEUS_PORT`` they answer on their own port
(the instrumented runs of this app set it).
"""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

INDEX = "<!doctype html><title>Trader</title><div id=root></div>"
STANDALONE = True

app = FastAPI(title="catch-all")


@app.get("/api/positions/{account}")
def positions(account: str) -> dict:
    return {"account": account, "positions": []}


@app.get("/{full_path:path}", include_in_schema=False)
def front_end(full_path: str) -> HTMLResponse:
    return HTMLResponse(INDEX)


FALLBACK = ("/{full_path:path}", "/{full_path}")  # with or without the convertor
ROUTES = {"/api/positions/a-1": "/api/positions/{account}", "/": FALLBACK,
          "/portfolio/7": FALLBACK, "/metrics": FALLBACK, "/metrics/health": FALLBACK}


def check(client) -> None:
    assert client.get("/api/positions/a-1").json() == {"account": "a-1", "positions": []}
    for path in ("/", "/portfolio/7", "/metrics", "/metrics/health"):
        page = client.get(path)
        assert (page.status_code, page.text) == (200, INDEX), path
    assert set(client.get("/openapi.json").json()["paths"]) == {"/api/positions/{account}"}
