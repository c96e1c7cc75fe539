"""The ASGI layer on host apps that are not ours: the endpoints live outside the host's router,
every request is counted once with its full route template, and the host is unchanged.

In one process, on the in-memory reader of ``mystocks_otel.testing``. The same patterns under
``opentelemetry-instrument`` in real uvicorn processes are in tests/integration/library/test_hostile.py.
"""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mystocks_otel import metrics_router, setup_telemetry
from mystocks_otel._internal.asgi import MARKER
from mystocks_otel.endpoints import ALTERNATIVE_PATH
from mystocks_otel.testing import capture_metrics

DURATION = "http.server.request.duration"


@pytest.fixture
def metrics():
    with capture_metrics() as capture:
        yield capture


def routes_counted(metrics) -> dict[tuple[str | None, int], int]:
    return {(p.attributes.get("http.route"), p.attributes["http.response.status_code"]): p.count
            for p in metrics.points(DURATION)}


# -- the host is unchanged ------------------------------------------------------------------


def tagged_app() -> FastAPI:
    """Client generators name operations after the first tag: untagged routes break this."""
    app = FastAPI(generate_unique_id_function=lambda route: f"{route.tags[0]}-{route.name}")
    router = APIRouter(tags=["items"])

    @router.get("/items/{item_id}")
    def read_item(item_id: int):
        return {"id": item_id}

    app.include_router(router, prefix="/api")
    return app


def test_tag_based_unique_ids_keep_working_and_openapi_is_byte_identical(metrics):
    bare = TestClient(tagged_app(), raise_server_exceptions=False)
    app = tagged_app()
    setup_telemetry(app)
    client = TestClient(app, raise_server_exceptions=False)

    assert client.get("/openapi.json").content == bare.get("/openapi.json").content
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/api/items/7").json() == {"id": 7}
    assert client.get("/docs").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics/health").status_code == 200
    assert client.get("/metrics/list").status_code == 200
    assert routes_counted(metrics)[("/api/items/{item_id}", 200)] == 1


def guarded_app() -> FastAPI:
    def require_api_key(x_api_key: str | None = Header(default=None)):
        if x_api_key != "k":
            raise HTTPException(status_code=403, detail="no key")

    app = FastAPI(dependencies=[Depends(require_api_key)])

    @app.get("/orders")
    def orders():
        return []

    return app


def test_a_global_dependency_does_not_guard_our_endpoints(metrics):
    bare = TestClient(guarded_app())
    app = guarded_app()
    setup_telemetry(app)
    client = TestClient(app)

    for path in ("/metrics", "/metrics/health", "/metrics/list"):
        assert client.get(path).status_code == 200, path  # Prometheus has no API key
    for headers in ({}, {"X-API-Key": "k"}):  # the host's own auth is untouched
        ours, theirs = client.get("/orders", headers=headers), bare.get("/orders", headers=headers)
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    assert client.get("/openapi.json", headers={"X-API-Key": "k"}).content == \
        bare.get("/openapi.json", headers={"X-API-Key": "k"}).content


def test_exception_handlers_do_not_see_our_endpoints(metrics):
    app = FastAPI()
    seen = []

    @app.exception_handler(404)
    async def not_found(request, exc):
        seen.append(request.url.path)
        return PlainTextResponse("custom 404", status_code=404)

    setup_telemetry(app)
    client = TestClient(app)
    assert client.get("/metrics").status_code == 200
    assert client.get("/nope").text == "custom 404"
    assert seen == ["/nope"]


# -- a host with its own /metrics keeps it --------------------------------------------------


def test_a_host_route_at_our_path_keeps_it_and_ours_move_together(metrics, caplog):
    app = FastAPI()
    setup_telemetry(app)  # set-up before the routes, as opentelemetry-instrument does

    @app.get("/metrics")
    def own_metrics():
        return {"mine": True}

    with caplog.at_level(logging.WARNING, logger="mystocks_otel"):
        client = TestClient(app)
        assert client.get("/metrics").json() == {"mine": True}
        assert client.get("/metrics").json() == {"mine": True}
    assert "http_server_request_duration_seconds" in client.get(ALTERNATIVE_PATH).text
    assert client.get(ALTERNATIVE_PATH + "/health").json()["status"] == "ok"
    assert client.get(ALTERNATIVE_PATH + "/list").json()["count"] > 0
    assert client.get("/metrics/health").status_code == 404  # the host's router answers there now
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and ALTERNATIVE_PATH in warnings[0], warnings
    # the excluded-URLs default followed our endpoints: the host's /metrics is measured
    counted = routes_counted(metrics)
    assert counted[("/metrics", 200)] == 2
    assert not any(route and route.startswith(ALTERNATIVE_PATH) for route, _ in counted)


def test_a_host_route_under_our_prefix_moves_all_three(metrics):
    app = FastAPI()
    setup_telemetry(app)

    @app.post("/metrics/list")
    def own_list():
        return "theirs"

    client = TestClient(app)
    assert client.post("/metrics/list").json() == "theirs"
    assert client.get("/metrics").status_code == 404
    assert client.get(ALTERNATIVE_PATH).status_code == 200


def test_an_explicit_path_is_never_moved_and_never_shadows_the_host(metrics, caplog, monkeypatch):
    monkeypatch.setenv("MYSTOCKS_OTEL_METRICS_PATH", "/metrics")
    app = FastAPI()
    setup_telemetry(app)

    @app.get("/metrics")
    def own_metrics():
        return "theirs"

    with caplog.at_level(logging.WARNING, logger="mystocks_otel"):
        client = TestClient(app)
        assert client.get("/metrics").json() == "theirs"
    assert client.get(ALTERNATIVE_PATH).status_code == 404
    assert any("not served on the app's port" in r.getMessage() for r in caplog.records)


def test_metrics_path_moves_the_endpoints_and_the_exclusion(metrics):
    app = FastAPI()
    setup_telemetry(app, metrics_path="/ops/metrics")

    @app.get("/ping")
    def ping():
        return "pong"

    client = TestClient(app)
    assert client.get("/ops/metrics").status_code == 200
    assert client.get("/ops/metrics/health").json()["status"] == "ok"
    assert client.get("/metrics").status_code == 404
    client.get("/ping")
    counted = routes_counted(metrics)
    assert counted == {("/ping", 200): 1, (None, 404): 1}, counted  # /ops/metrics not measured


def test_explicit_metrics_router_still_works_and_is_not_taken_for_the_hosts(metrics, caplog):
    app = FastAPI()
    app.include_router(metrics_router(token="t0k"))
    with caplog.at_level(logging.WARNING, logger="mystocks_otel"):
        setup_telemetry(app)
        client = TestClient(app)
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer t0k"}).status_code == 200
    assert client.get("/metrics/health").status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_router_alone_serves_the_three_endpoints_with_its_token(metrics):
    app = FastAPI(generate_unique_id_function=lambda route: f"{route.tags[0]}-{route.name}")
    app.include_router(metrics_router(token="t0k", include_in_schema=True), prefix="/internal")
    client = TestClient(app)
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/internal/metrics", "/internal/metrics/health", "/internal/metrics/list"}
    assert client.get("/internal/metrics").status_code == 401
    ok = client.get("/internal/metrics", headers={"Authorization": "Bearer t0k"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    assert client.get("/internal/metrics/health").status_code == 200
    assert client.get("/internal/metrics/list").json()["count"] > 0


# -- mounts and prefixes: full templates, counted once ---------------------------------------


def mounted_app() -> FastAPI:
    """What opentelemetry-instrument produces: every FastAPI() is set up, the sub-app too."""
    def tenant_header(x_tenant: str | None = Header(default=None)):
        return x_tenant

    sub = FastAPI()
    setup_telemetry(sub)
    things = APIRouter(dependencies=[Depends(tenant_header)])

    @things.get("/things/{thing_id}")
    def thing(thing_id: int):
        return {"id": thing_id}

    sub.include_router(things, prefix="/inv")
    plain = Starlette(routes=[Route("/reports/{name}", lambda request: PlainTextResponse("r"))])
    app = FastAPI()
    setup_telemetry(app)
    app.mount("/v2", sub)
    app.mount("/t/{tenant}", plain)
    api = APIRouter(prefix="/orders", dependencies=[Depends(tenant_header)])

    @api.get("/{order_id}")
    def order(order_id: int):
        return {"id": order_id}

    app.include_router(api, prefix="/api")
    return app


def test_mounted_apps_are_counted_once_with_the_full_template(metrics):
    client = TestClient(mounted_app())
    for i in range(3):
        assert client.get(f"/v2/inv/things/{i}").status_code == 200
        assert client.get(f"/t/acme-{i}/reports/daily").status_code == 200
        assert client.get(f"/api/orders/{i}").status_code == 200
    assert client.get("/v2/metrics").status_code == 404  # no stray endpoints in the sub-app
    assert client.get("/v2/unknown/x").status_code == 404
    assert client.get("/v2/openapi.json").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    counted = routes_counted(metrics)
    assert counted == {
        ("/v2/openapi.json", 200): 1,  # FastAPI's router leaves plain routes out of the scope
        ("/openapi.json", 200): 1,
        ("/v2/inv/things/{thing_id}", 200): 3,
        ("/t/{tenant}/reports/{name}", 200): 3,  # the tenant value never becomes a label
        ("/api/orders/{order_id}", 200): 3,
        ("/v2/{path}", 404): 2,  # one bounded series per mount for unknown paths
    }, counted


async def call(app, path: str, *, root_path: str = "", headers=(), method: str = "GET"):
    """One HTTP request straight through the ASGI interface, with raw header bytes."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": root_path + path, "raw_path": (root_path + path).encode(),
             "root_path": root_path, "query_string": b"", "headers": list(headers),
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.anyio
async def test_root_path_deployments_keep_templates_and_serve_the_endpoints(metrics):
    app = mounted_app()
    status, _ = await call(app, "/api/orders/5", root_path="/gateway")
    assert status == 200
    status, body = await call(app, "/metrics", root_path="/gateway")
    assert status == 200 and b"http_server_request_duration_seconds" in body
    status, _ = await call(app, "/v2/inv/things/1", root_path="/gateway")
    assert status == 200
    # semantic conventions: http.route "SHOULD include the application root"
    assert routes_counted(metrics) == {("/gateway/api/orders/{order_id}", 200): 1,
                                       ("/gateway/v2/inv/things/{thing_id}", 200): 1}


def test_requests_a_middleware_answers_are_counted_and_our_endpoints_come_first(metrics):
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.middleware.cors import CORSMiddleware

    async def api_key_only(request, call_next):
        if request.headers.get("x-api-key") != "k":
            return PlainTextResponse("no key", status_code=403)
        return await call_next(request)

    app = FastAPI()
    setup_telemetry(app)  # before the middleware, as opentelemetry-instrument does

    @app.get("/items/{item_id}")
    def item(item_id: int):
        return {"id": item_id}

    app.add_middleware(BaseHTTPMiddleware, dispatch=api_key_only)
    app.add_middleware(CORSMiddleware, allow_origins=["https://ui.example"], allow_methods=["GET"])
    client = TestClient(app)
    assert client.get("/items/1").status_code == 403
    assert client.get("/items/1", headers={"x-api-key": "k"}).status_code == 200
    preflight = client.options("/items/1", headers={"Origin": "https://ui.example",
                                                    "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert client.get("/metrics").status_code == 200  # the host's auth middleware never sees it
    assert routes_counted(metrics) == {("/items/{item_id}", 200): 1, (None, 403): 1, (None, 200): 1}
    from mystocks_otel._internal import asgi

    assert len(asgi.layers(app)) == 1  # outside the middleware list, not in it:
    assert all(m.cls is not asgi.MetricsMiddleware for m in app.user_middleware)


@pytest.mark.anyio
async def test_an_inner_layer_passes_a_marked_request_through(metrics):
    sub = FastAPI()
    setup_telemetry(sub)

    @sub.get("/x")
    def x():
        return 1

    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "root_path": "", "headers": [],
             "query_string": b"", MARKER: True}
    await sub(scope, receive, send)
    assert sent[0]["status"] == 404  # an outer layer serves the endpoints, not this one
    assert metrics.points(DURATION) == []  # and counts the request


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_our_endpoints_are_labelled_like_any_route_when_measured(metrics):
    app = FastAPI()
    setup_telemetry(app, excluded_urls="^/nothing")  # the endpoints are measured too
    assert (await call(app, "/metrics/health", root_path="/gw"))[0] == 200
    assert routes_counted(metrics) == {("/gw/metrics/health", 200): 1}


def test_a_websocket_in_a_mounted_app_is_counted_once_under_its_full_template(metrics):
    sub = FastAPI()
    setup_telemetry(sub)

    @sub.websocket("/feed/{channel}")
    async def feed(websocket: WebSocket, channel: str):
        await websocket.accept()
        await websocket.send_text(channel)
        await websocket.close()

    app = FastAPI()
    setup_telemetry(app)
    app.mount("/v2", sub)
    client = TestClient(app)
    for channel in ("a", "b"):
        with client.websocket_connect(f"/v2/feed/{channel}") as ws:
            assert ws.receive_text() == channel
    assert metrics.value("mystocks.websocket.connections_opened") == 2
    assert metrics.series("mystocks.websocket.connections_opened") == [{"namespace": "/v2/feed/{channel}"}]
    assert metrics.value("mystocks.websocket.messages", {"direction": "sent"}) == 2


def test_spans_skip_our_endpoints_at_their_configured_path(metrics):
    app = FastAPI()
    setup_telemetry(app, metrics_path="/ops/metrics", tracer_provider=metrics.tracer_provider)

    @app.get("/ping")
    def ping():
        return "pong"

    client = TestClient(app)
    client.get("/ping")
    client.get("/ops/metrics")
    client.get("/ops/metrics/health")
    paths = {span.attributes.get("url.path") or span.attributes.get("http.target")
             for span in metrics.spans()}
    assert "/ping" in paths
    assert not any(path and path.startswith("/ops/metrics") for path in paths), paths
