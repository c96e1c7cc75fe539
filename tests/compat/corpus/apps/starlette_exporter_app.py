"""An app instrumented with starlette_exporter: its ``PrometheusMiddleware`` plus
``app.add_route("/metrics", handle_metrics)``. Its middleware reads the matched route
from the scope too; its counts must be the same with or without us."""

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette_exporter import PrometheusMiddleware, handle_metrics

app = FastAPI(title="starlette-exporter")
app.add_middleware(PrometheusMiddleware, app_name="shop", group_paths=True)
app.add_route("/metrics", handle_metrics)


@app.get("/carts/{cart_id}/lines/{line}")
async def line(cart_id: str, line: int) -> dict:
    return {"cart": cart_id, "line": line}


VOLATILE_BODIES = {"/metrics"}  # durations and process_* gauges; counts checked below
ROUTES = {"/carts/c-1/lines/1": "/carts/{cart_id}/lines/{line}",
          "/carts/c-2/lines/3": "/carts/{cart_id}/lines/{line}",
          "/carts/c-2/lines/x": "/carts/{cart_id}/lines/{line}",
          "/metrics": "/metrics"}


def requests_seen(text: str) -> dict:
    return {(s.labels["app_name"], s.labels["path"], s.labels["method"], s.labels["status_code"]):
            s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "starlette_requests_total"}


def check(client) -> None:
    assert client.get("/carts/c-1/lines/1").json() == {"cart": "c-1", "line": 1}
    assert client.get("/carts/c-2/lines/3").json() == {"cart": "c-2", "line": 3}
    assert client.get("/carts/c-2/lines/x").status_code == 422
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert requests_seen(scraped.text) == {
        ("shop", "/carts/{cart_id}/lines/{line}", "GET", "200"): 2.0,
        ("shop", "/carts/{cart_id}/lines/{line}", "GET", "422"): 1.0}
