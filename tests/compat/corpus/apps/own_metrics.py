"""An app that already serves its own ``GET /metrics`` (its own prometheus_client registry).

The host's handler must keep answering ``/metrics``; ours move to another prefix and a
start-up line says where. The host's ``/metrics`` is the host's traffic and is counted;
the default excluded URLs follow our endpoints to their new prefix.
"""

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

REGISTRY = CollectorRegistry()
OPEN_ORDERS = Gauge("shop_open_orders", "Orders not yet filled.", registry=REGISTRY)

app = FastAPI(title="own-metrics")


@app.post("/orders", status_code=201)
def place_order() -> dict:
    OPEN_ORDERS.inc()
    return {"placed": True}


@app.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


ROUTES = {"/orders": "/orders", "/metrics": "/metrics"}


def check(client) -> None:
    assert client.post("/orders").status_code == 201
    assert client.post("/orders").status_code == 201
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    assert scraped.text == ("# HELP shop_open_orders Orders not yet filled.\n"
                            "# TYPE shop_open_orders gauge\nshop_open_orders 2.0\n")
    assert set(client.get("/openapi.json").json()["paths"]) == {"/orders"}
