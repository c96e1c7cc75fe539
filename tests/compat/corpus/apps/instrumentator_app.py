"""An app already instrumented with prometheus-fastapi-instrumentator, the most common
way FastAPI apps expose ``/metrics`` today: ``Instrumentator().instrument(app).expose(app)``.

Its ``/metrics`` keeps answering with its own counts, which must not change when we are
added (same requests seen, same handler templates); ours move to another prefix.
"""

from fastapi import FastAPI, HTTPException
from prometheus_client.parser import text_string_to_metric_families
from prometheus_fastapi_instrumentator import Instrumentator

app = FastAPI(title="instrumented-already")


@app.get("/items/{item_id}")
def item(item_id: int) -> dict:
    if item_id == 0:
        raise HTTPException(404, "no item 0")
    return {"id": item_id}


@app.post("/items", status_code=201)
def create() -> dict:
    return {"created": True}


Instrumentator().instrument(app).expose(app, include_in_schema=False)

VOLATILE_BODIES = {"/metrics"}  # durations, sizes and process_* gauges; counts checked below
ROUTES = {"/items/1": "/items/{item_id}", "/items/2": "/items/{item_id}",
          "/items/0": "/items/{item_id}", "/items": "/items", "/nowhere": None,
          "/metrics": "/metrics"}


def requests_seen(text: str) -> dict:
    return {(s.labels["handler"], s.labels["method"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "http_requests_total"}


def check(client) -> None:
    assert client.get("/items/1").json() == {"id": 1}
    assert client.get("/items/2").json() == {"id": 2}
    assert client.get("/items/0").status_code == 404
    assert client.post("/items").status_code == 201
    assert client.get("/nowhere").status_code == 404
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert requests_seen(scraped.text) == {
        ("/items/{item_id}", "GET", "2xx"): 2.0, ("/items/{item_id}", "GET", "4xx"): 1.0,
        ("/items", "POST", "2xx"): 1.0, ("none", "GET", "4xx"): 1.0}
    assert "process_cpu_seconds_total" in scraped.text
    assert set(client.get("/openapi.json").json()["paths"]) == {"/items/{item_id}", "/items"}
