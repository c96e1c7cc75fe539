"""The HTTP options users of prometheus-fastapi-instrumentator and starlette-exporter reach for,
on a real FastAPI app served through httpx's ASGI transport (in one process, on the capture's
in-memory reader and the /metrics the app serves):

- request and response body sizes (``MYSTOCKS_OTEL_HTTP_BODY_SIZE``, off by default);
- the HTTP duration buckets (``MYSTOCKS_OTEL_HTTP_BUCKETS`` or ``http_buckets=``);
- status-code grouping (``MYSTOCKS_OTEL_HTTP_GROUP_STATUS_CODES``);
- excluded routes by pattern (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``), for HTTP and WebSocket.

The same options in real uvicorn and gunicorn processes (the standalone port, the multiprocess
merge, OTLP) are in tests/integration/library/test_http_options.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import httpx
import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mystocks_otel import catalog, setup_telemetry
from mystocks_otel.config import ConfigError
from mystocks_otel.testing import capture_metrics

DURATION = "http.server.request.duration"
REQUEST_SIZE = "http.server.request.body.size"
RESPONSE_SIZE = "http.server.response.body.size"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload/{name}")
    async def upload(name: str, request: Request):
        body = await request.body()
        return Response(b"k" * (len(body) // 2), media_type="application/octet-stream")

    @app.get("/stream")
    def stream():  # no Content-Length: chunked
        return StreamingResponse(iter([b"a" * 1000, b"b" * 500, b"c" * 24]))

    @app.get("/items/{item_id}")
    def item(item_id: int):
        return {"id": item_id}

    @app.get("/moved")
    def moved():
        return Response(status_code=307, headers={"location": "/items/1"})

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.get("/internal/state")
    def internal():
        return {"ok": True}

    @app.get("/api/ping")
    def ping():
        return "pong"

    @app.get("/api/ping2")
    def ping2():
        return "pong"

    @app.websocket("/internal/ws")
    async def internal_ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    @app.websocket("/ws")
    async def public_ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    return app


@contextlib.contextmanager
def instrumented(**options):
    """Inside a fresh capture, make_app() set up with ``options``: yields (app, capture)."""
    with capture_metrics() as capture:
        app = make_app()
        setup_telemetry(app, **options)
        yield app, capture


async def _calls(app, *calls):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, path, **kwargs) for method, path, kwargs in calls]


def call(app, *calls):
    """Each ``(method, path, httpx options)`` in turn; the responses."""
    return asyncio.run(_calls(app, *calls))


def one_point(capture, name, **attributes):
    (point,) = capture.points(name, attributes)
    return point


def scrape(app) -> dict:
    """{sample name: [(labels, value)]} of the app's /metrics."""
    (response,) = call(app, ("GET", "/metrics", {}))
    assert response.status_code == 200
    found: dict = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


# -- body sizes ---------------------------------------------------------------------------------


def test_body_sizes_are_off_by_default():
    with instrumented() as (app, capture):
        call(app, ("POST", "/upload/a", {"content": b"x" * 100}))
        assert capture.count(DURATION, {"http.route": "/upload/{name}"}) == 1
        assert capture.points(REQUEST_SIZE) == [] and capture.points(RESPONSE_SIZE) == []
        names = scrape(app)
        assert "http_server_request_duration_seconds_count" in names
        assert not [n for n in names if "body_size" in n]


def test_content_length_bodies_are_measured_exactly():
    with instrumented(http_body_size=True) as (app, capture):
        (response,) = call(app, ("POST", "/upload/a", {"content": b"x" * 3000}))
        assert len(response.content) == 1500
        labels = {"http.route": "/upload/{name}", "http.request.method": "POST",
                  "http.response.status_code": 200}
        request = one_point(capture, REQUEST_SIZE, **labels)
        response_ = one_point(capture, RESPONSE_SIZE, **labels)
        assert (request.count, request.sum) == (1, 3000)
        assert (response_.count, response_.sum) == (1, 1500)
        assert tuple(request.explicit_bounds) == catalog.BODY_SIZE_BUCKETS
        # 3000 bytes fall in the 4096 bucket, 1500 too
        assert request.bucket_counts[catalog.BODY_SIZE_BUCKETS.index(4096.0)] == 1

        samples = scrape(app)
        assert [v for l, v in samples["http_server_request_body_size_bytes_sum"]
                if l["http_route"] == "/upload/{name}"] == [3000.0]
        assert [v for l, v in samples["http_server_response_body_size_bytes_sum"]
                if l["http_route"] == "/upload/{name}"] == [1500.0]


def test_bodies_without_content_length_are_counted_as_they_stream():
    """A chunked upload (no Content-Length) counts the bytes the app read; a streamed response
    the bytes sent, message by message."""
    async def chunks():
        yield b"1" * 700
        yield b"2" * 300

    with instrumented(http_body_size=True) as (app, capture):
        upload, stream = call(app, ("POST", "/upload/b", {"content": chunks()}),
                              ("GET", "/stream", {}))
        assert upload.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in stream.headers and len(stream.content) == 1524
        assert one_point(capture, REQUEST_SIZE, **{"http.route": "/upload/{name}"}).sum == 1000
        assert one_point(capture, RESPONSE_SIZE, **{"http.route": "/upload/{name}"}).sum == 500
        assert one_point(capture, REQUEST_SIZE, **{"http.route": "/stream"}).sum == 0
        assert one_point(capture, RESPONSE_SIZE, **{"http.route": "/stream"}).sum == 1524


def test_a_request_the_app_fails_has_a_request_size_and_no_response_size():
    """The app raised before responding: the 500 is written by Starlette's error middleware,
    outside the layer, so no response size is known; the duration and request size are kept."""
    with instrumented(http_body_size=True) as (app, capture):
        (response,) = call(app, ("GET", "/boom", {}))
        assert response.status_code == 500
        assert capture.count(DURATION, {"http.route": "/boom", "http.response.status_code": 500}) == 1
        assert capture.count(REQUEST_SIZE, {"http.route": "/boom"}) == 1
        assert capture.points(RESPONSE_SIZE, {"http.route": "/boom"}) == []


def test_manual_fallback_records_body_sizes():
    import mystocks_otel

    with capture_metrics() as capture:
        mystocks_otel.record_api_request("get", "/legacy", 200, 0.01, request_body_size=0,
                                         response_body_size=42)
        text = capture.prometheus_text()
        assert ('http_server_response_body_size_bytes_sum{http_request_method="GET",'
                'http_response_status_code="200",http_route="/legacy"} 42' in text)
        assert ('http_server_request_body_size_bytes_count{http_request_method="GET",'
                'http_response_status_code="200",http_route="/legacy"} 1' in text)


def test_manual_fallback_groups_status_codes_as_the_set_up_says():
    import mystocks_otel

    with capture_metrics() as capture:
        setup_telemetry(make_app(), group_status_codes=True)
        mystocks_otel.record_api_request("GET", "/legacy", 503, 0.01, response_body_size=10)
        assert 'http_response_status_code="5xx",http_route="/legacy"} 10' in capture.prometheus_text()
        assert capture.count(DURATION, {"http.route": "/legacy", "http.response.status_code": "5xx"}) == 1


# -- buckets ------------------------------------------------------------------------------------


def duration_les(samples: dict, route: str) -> list[str]:
    return [l["le"] for l, _ in samples["http_server_request_duration_seconds_bucket"]
            if l.get("http_route") == route]


def test_default_buckets_are_the_catalogs():
    with instrumented() as (app, capture):
        call(app, ("GET", "/items/1", {}))
        point = one_point(capture, DURATION, **{"http.route": "/items/{item_id}"})
        assert tuple(point.explicit_bounds) == catalog.LATENCY_BUCKETS
        assert duration_les(scrape(app), "/items/{item_id}") == (
            [str(b) for b in catalog.LATENCY_BUCKETS] + ["+Inf"])


def test_setup_option_buckets_replace_the_catalogs_on_metrics_and_the_sdk_reader():
    with instrumented(http_buckets=[0.3, 1, 3]) as (app, capture):
        call(app, ("GET", "/items/1", {}), ("GET", "/items/2", {}))
        point = one_point(capture, DURATION, **{"http.route": "/items/{item_id}"})
        assert tuple(point.explicit_bounds) == (0.3, 1.0, 3.0)
        assert point.count == 2 and sum(point.bucket_counts) == 2
        assert duration_les(scrape(app), "/items/{item_id}") == ["0.3", "1.0", "3.0", "+Inf"]
        # the other latency histograms keep the catalog's
        assert capture.points("mystocks.db.query_duration") == []
        from mystocks_otel._internal.state import histogram

        assert histogram("mystocks.trading.order_latency").bounds == catalog.LATENCY_BUCKETS


def test_environment_buckets_and_the_next_capture_is_back_to_the_catalogs(monkeypatch):
    monkeypatch.setenv("MYSTOCKS_OTEL_HTTP_BUCKETS", "0.05,0.25,1,2.5")
    with instrumented() as (app, _):
        call(app, ("GET", "/items/1", {}))
        assert duration_les(scrape(app), "/items/{item_id}") == ["0.05", "0.25", "1.0", "2.5", "+Inf"]
    monkeypatch.delenv("MYSTOCKS_OTEL_HTTP_BUCKETS")
    with instrumented() as (app, capture):
        call(app, ("GET", "/items/1", {}))
        point = one_point(capture, DURATION, **{"http.route": "/items/{item_id}"})
        assert tuple(point.explicit_bounds) == catalog.LATENCY_BUCKETS


@pytest.mark.parametrize("buckets", [[1, 0.5], [0, 1], [float("nan")], [], "0.1,1", [0.1] * 41])
def test_bad_setup_buckets_fail_with_one_line(buckets):
    with pytest.raises(ConfigError) as error:
        setup_telemetry(FastAPI(), http_buckets=buckets)
    message = str(error.value)
    assert "\n" not in message and message.startswith("setup_telemetry option http_buckets=")


def test_bad_environment_buckets_fail_with_one_line(monkeypatch):
    monkeypatch.setenv("MYSTOCKS_OTEL_HTTP_BUCKETS", "0.1,fast")
    with pytest.raises(ConfigError) as error:
        setup_telemetry(FastAPI())
    assert str(error.value).startswith("MYSTOCKS_OTEL_HTTP_BUCKETS='0.1,fast' is invalid")


# -- status-code grouping -------------------------------------------------------------------------


def test_status_codes_are_exact_by_default():
    with instrumented() as (app, capture):
        call(app, ("GET", "/items/1", {}), ("GET", "/nowhere", {}))
        codes = {p.attributes["http.response.status_code"] for p in capture.points(DURATION)}
        assert codes == {200, 404}


def test_grouped_status_codes_on_every_http_metric(monkeypatch):
    monkeypatch.setenv("MYSTOCKS_OTEL_HTTP_GROUP_STATUS_CODES", "true")
    with instrumented(http_body_size=True) as (app, capture):
        call(app, ("GET", "/items/1", {}), ("GET", "/items/2", {}),
             ("GET", "/moved", {"follow_redirects": False}), ("GET", "/nowhere", {}),
             ("GET", "/items/x", {}), ("GET", "/boom", {}))
        counted = {(p.attributes.get("http.route"), p.attributes["http.response.status_code"]): p.count
                   for p in capture.points(DURATION)}
        assert counted == {("/items/{item_id}", "2xx"): 2, ("/moved", "3xx"): 1, (None, "4xx"): 1,
                           ("/items/{item_id}", "4xx"): 1, ("/boom", "5xx"): 1}
        for name in (REQUEST_SIZE, RESPONSE_SIZE):
            assert {p.attributes["http.response.status_code"] for p in capture.points(name)} <= {
                "2xx", "3xx", "4xx", "5xx"}
        server_errors = [l for l, _ in scrape(app)["http_server_request_duration_seconds_count"]
                         if re.fullmatch("5..", l["http_response_status_code"])]  # the rules' =~"5.."
        assert [l["http_route"] for l in server_errors] == ["/boom"]


# -- excluded URLs ---------------------------------------------------------------------------------

USER_PATTERN = r"^/internal/.*,/api/ping$"


def test_excluded_urls_by_pattern_for_http_and_websocket(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", USER_PATTERN)
    with instrumented(http_body_size=True) as (app, capture):
        responses = call(app, ("GET", "/internal/state", {}), ("GET", "/api/ping", {}),
                         ("GET", "/api/ping2", {}), ("GET", "/items/1", {}))
        assert [r.status_code for r in responses] == [200, 200, 200, 200]  # served all the same
        client = TestClient(app)
        for path in ("/internal/ws", "/ws"):
            with client.websocket_connect(path) as ws:
                assert ws.receive_text() == "hi"
        routes = {p.attributes.get("http.route") for name in (DURATION, REQUEST_SIZE, RESPONSE_SIZE)
                  for p in capture.points(name)}
        assert routes == {"/api/ping2", "/items/{item_id}"}
        opened = {p.attributes["namespace"]: p.value
                  for p in capture.points("mystocks.websocket.connections_opened")}
        assert opened == {"/ws": 1}
        assert {p.attributes["namespace"] for p in capture.points("mystocks.websocket.messages")} == {"/ws"}


def test_excluded_urls_search_the_path_inside_the_app_unanchored(monkeypatch):
    """Upstream's semantics: each comma-separated regex is searched (not matched) in the path;
    under a root path (a proxy prefix) the path inside the app is what is searched."""
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "ping")
    with instrumented() as (app, capture):
        call(app, ("GET", "/api/ping", {}), ("GET", "/api/ping2", {}), ("GET", "/items/1", {}))
        assert {p.attributes.get("http.route") for p in capture.points(DURATION)} == {"/items/{item_id}"}


def test_a_bad_excluded_pattern_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "^/ok,([unclosed")
    with pytest.raises(ConfigError) as error:
        setup_telemetry(FastAPI())
    assert "\n" not in str(error.value)
    assert str(error.value).startswith("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS=")


# -- the multiprocess store --------------------------------------------------------------------------


def test_the_store_merges_only_series_written_with_the_scrapers_buckets(tmp_path):
    """Workers of one server share their settings; a file written with other HTTP buckets (a
    worker started with another MYSTOCKS_OTEL_HTTP_BUCKETS in the same run) is left out of the
    merge instead of being read with the wrong bucket layout."""
    import os

    from mystocks_otel._internal.instruments import Instruments
    from mystocks_otel._internal.multiprocess import Store

    custom = Instruments(catalog.METRICS)
    custom.histogram(DURATION).set_buckets((0.3, 1.0, 3.0))
    other = Store(str(tmp_path), custom, os.getpid(), "test")
    custom.histogram(DURATION).record(0.5, "GET", "/x", 200)
    same = Instruments(catalog.METRICS)
    custom_too = Store(str(tmp_path), same, os.getpid(), "test")
    same.histogram(DURATION).set_buckets((0.3, 1.0, 3.0))  # before any record: no entry yet
    same.histogram(DURATION).record(2.0, "GET", "/x", 200)
    scraper = Instruments(catalog.METRICS)
    scraper.histogram(DURATION).set_buckets((0.3, 1.0, 3.0))
    reader = Store(str(tmp_path), scraper, os.getpid(), "test")
    (key, series), = reader.merged()[DURATION][0]
    assert key == ("GET", "/x", 200) and series[:4] == [0, 1, 1, 0] and series[4] == 2.5

    default = Store(str(tmp_path), Instruments(catalog.METRICS), os.getpid(), "test")
    assert not list(default.merged().get(DURATION, ((), None))[0])  # nothing fits its layout
    for store in (other, custom_too, reader, default):
        store.close()
