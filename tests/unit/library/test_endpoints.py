"""The three endpoints on every door: the token check, the standalone port, honest health.

In one process (the ``mystocks_otel.testing`` reset) with real servers: the standalone port
is our real ``http.server`` on a free port, and the dead Collector is a closed free port.
The same doors in a real uvicorn process are fuzzed in tests/integration/library/test_hostile.py.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mystocks_otel import config, endpoints, setup_telemetry, update_health_metrics
from mystocks_otel._internal import auth, export_health, standalone, state
from mystocks_otel._internal.asgi import MetricsMiddleware
from mystocks_otel.testing import capture_metrics
from support import free_port, raw_status, wait_until

TOKEN = "s3cr\u00e9t-t0ken"  # non-ASCII on purpose: the UTF-8 bytes are what a client sends


# -- the one token check -----------------------------------------------------------------


WIRE = TOKEN.encode().decode("latin-1")  # the token's UTF-8 bytes as a server decodes them


@pytest.mark.parametrize("header, expected", [
    ("Bearer " + WIRE, True),
    (b"Bearer " + TOKEN.encode(), True),
    ("bearer " + WIRE, True),  # the scheme is case-insensitive
    ("Bearer  " + WIRE + " ", True),
    ("Basic " + WIRE, False),
    ("Bearer " + WIRE[:-1], False),
    ("Bearer " + TOKEN, False),  # latin-1 bytes of the token (one byte for the é): no match
    (b"Bearer s3cr\xe9t-t0ken", False),
    ("Bearer s3cr\u4e00t", False),  # not latin-1 at all
    ("Bearer \ud800", False),  # a lone surrogate
    (WIRE, False),  # no scheme
    ("Bearer", False),
    ("", False),
    (None, False),
    ("Bearer " + "x" * 100_000, False),
])
def test_bearer_matches_bytes_and_never_raises(header, expected):
    assert auth.bearer_matches(header, TOKEN) is expected


def test_no_token_means_open_and_webhook_shares_the_check():
    assert auth.bearer_matches(None, None) and auth.bearer_matches("junk", "")
    from mystocks_otel import alert_webhook

    assert alert_webhook.bearer_matches is auth.bearer_matches


def test_answer_guards_only_metrics_and_allows_only_get_and_head(mystocks_metrics):
    assert endpoints.answer("", token=TOKEN).status == 401
    assert endpoints.answer("", token=TOKEN).headers == (("WWW-Authenticate", 'Bearer realm="metrics"'),)
    assert endpoints.answer("", token=TOKEN, authorization="Bearer " + WIRE).status == 200
    assert endpoints.answer("/health", token=TOKEN).status == 200  # probes need no token
    assert endpoints.answer("/list", token=TOKEN).status == 200
    assert endpoints.answer("", method="POST").status == 405


def test_metrics_path_is_validated_in_one_line():
    for bad in ("metrics", "/metrics/", "/", "/a b", "//x"):
        with pytest.raises(config.ConfigError) as error:
            config.load({"MYSTOCKS_OTEL_METRICS_PATH": bad})
        assert "MYSTOCKS_OTEL_METRICS_PATH" in str(error.value) and "\n" not in str(error.value)
    assert config.load({"MYSTOCKS_OTEL_METRICS_PATH": "/ops/metrics"}).metrics_path == "/ops/metrics"
    assert config.load({}).metrics_path is None and config.load({}).prometheus_host == "localhost"


def test_excluded_urls_default_follows_the_prefix():
    default = config.Settings()
    assert endpoints.excluded_urls(default, "/metrics") == config.DEFAULT_EXCLUDED_URLS
    moved = endpoints.excluded_urls(default, "/_otel/metrics")
    assert moved.startswith(r"^/_otel/metrics(/|$),") and "^/metrics" not in moved
    assert "^/metrics" not in endpoints.excluded_urls(default, None)
    custom = config.Settings(excluded_urls="^/ping")
    assert endpoints.excluded_urls(custom, "/_otel/metrics") == "^/ping"


# -- the app's port, at the ASGI level with raw header bytes --------------------------------


def guarded_app():
    app = FastAPI()
    setup_telemetry(app, metrics_token=TOKEN)
    return app


async def asgi_get(app, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
               "root_path": "", "query_string": b"", "headers": headers, "http_version": "1.1",
               "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)},
              receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


GOOD = {b"Bearer " + TOKEN.encode(), b"bearer " + TOKEN.encode(), b"BEARER  " + TOKEN.encode() + b" "}
HEADER_VALUES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: b"Bearer " + b, st.binary(max_size=64)),
    st.builds(lambda t: ("Bearer " + t).encode("utf-8", "surrogatepass"), st.text(max_size=40)),
    st.sampled_from([b"", b"Bearer", b"Bearer ", b"bearer s3cr\xe9t-t0ken", b"\xff\xfe",
                     b"Bearer " + b"A" * 20_000, ("Bearer " + TOKEN).encode("latin-1"), *GOOD]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=HEADER_VALUES)
def test_a_malformed_authorization_header_is_a_401_on_the_app_port(guarded, value):
    import anyio

    expected = 200 if value in GOOD else 401
    assert anyio.run(asgi_get, guarded, "/metrics", [(b"authorization", value)]) == expected
    assert anyio.run(asgi_get, guarded, "/metrics/health", [(b"authorization", value)]) == 200


@pytest.fixture
def guarded():
    with capture_metrics():
        yield guarded_app()


# -- the standalone port: same endpoints, same token, localhost ------------------------------


@pytest.fixture
def metrics_port():
    """Our standalone server on a free port, as OTEL_EXPORTER_PROMETHEUS_PORT starts it."""
    with capture_metrics():
        app = FastAPI()
        port = free_port()
        handle = setup_telemetry(app, metrics_token=TOKEN, prometheus_port=port)
        assert handle.enabled
        # no app server listens in this process: the port is bound after a short grace
        assert state.metrics_server().bound.wait(10) and state.metrics_server().outcome == "serving"
        try:
            yield port
        finally:
            handle.shutdown()
            standalone.stop()


def test_the_standalone_port_binds_localhost_and_demands_the_token(metrics_port):
    server = state.metrics_server()
    assert server is not None and server.server_address[0] in ("127.0.0.1", "::1")
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    assert response.status == 401 and response.getheader("WWW-Authenticate") == 'Bearer realm="metrics"'
    response.read()
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + WIRE})
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 200 and "target_info" in body
    conn.request("GET", "/metrics/health")
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    conn.request("GET", "/metrics/list")
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["count"] > 0
    conn.request("GET", "/anything-else")
    response = conn.getresponse()
    assert response.status == 404
    response.read()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=HEADER_VALUES)
def test_a_malformed_authorization_header_is_a_401_or_400_on_the_standalone_port(metrics_port, value):
    status = raw_status(metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
                         + value + b"\r\nConnection: close\r\n\r\n")
    assert status in ((200,) if value in GOOD else (400, 401, 431)), (value, status)
    assert raw_status(metrics_port, b"GET /metrics/health HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: " + value + b"\r\nConnection: close\r\n\r\n") in (200, 400, 431)


# -- honest health ------------------------------------------------------------------------


def test_a_dead_otlp_endpoint_makes_health_degraded_while_requests_succeed(monkeypatch):
    dead = free_port()  # nothing listens: every export is refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{dead}/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1")
    with capture_metrics(metrics_exporters=("prometheus", "otlp"), export_interval_ms=200) as capture:
        app = FastAPI()

        @app.get("/ping")
        def ping():
            return "pong"

        setup_telemetry(app)
        client = TestClient(app)

        def failing_twice():
            assert client.get("/ping").status_code == 200  # requests keep succeeding
            otlp = client.get("/metrics/health").json()["reader_states"]["otlp"]
            return otlp if otlp["consecutive_failures"] >= 2 else None

        otlp = wait_until(failing_twice, timeout=60, what="two failed OTLP exports")
        health = client.get("/metrics/health")
        assert health.status_code == 200  # probes must not restart the app over telemetry
        report = health.json()
        assert report["status"] == "degraded"
        assert otlp["state"] == "failing" and otlp["last_success"] is None
        assert "Connection" in otlp["last_error"] or "refused" in otlp["last_error"], otlp
        assert report["reader_states"]["prometheus"]["state"] == "ok"
        assert capture.value(export_health.EXPORT_FAILURES, {"exporter": "otlp"}) >= 2
        update_health_metrics()  # the periodic probe, run now: the exporter component follows
        assert client.get("/metrics/health").json()["components"]["exporter"] is False
        assert capture.value("mystocks.health.component_status", {"component": "exporter"}) == 0
        assert "mystocks_telemetry_export_failures_total" in client.get("/metrics").text


def test_a_recovered_exporter_resets_the_consecutive_failures():
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class Flaky(MetricExporter):  # a real MetricExporter whose outcome the test chooses
        def __init__(self):
            super().__init__()
            self.results = [MetricExportResult.FAILURE, MetricExportResult.SUCCESS]

        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return self.results.pop(0)

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    statuses = export_health.ExportStatuses()
    watched = export_health.WatchedExporter(Flaky(), "flaky", statuses, state.counter(export_health.EXPORT_FAILURES))
    watched.export(None)
    assert watched.status.state == "failing" and watched.status.consecutive_failures == 1
    before = time.time()
    watched.export(None)
    assert watched.status.state == "ok" and watched.status.consecutive_failures == 0
    assert watched.status.last_success >= before and watched.status.failures_total == 1


def test_error_text_masks_credentials_and_is_bounded():
    text = export_health.describe(ConnectionError("http://user:pw@collector:4318/v1/metrics " + "x" * 1000))
    assert "pw" not in text and "//***@collector" in text and len(text) <= export_health.MAX_ERROR_CHARS


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_the_middleware_defaults_are_safe():
    layer = MetricsMiddleware(lambda *a: None)
    assert layer.settings.metrics_token is None and layer.prefix is None
    layer.resolve(None)
    assert layer.prefix == "/metrics"


@pytest.mark.parametrize("env, chosen, expected", [
    ({}, None, None),  # the SDK's unknown_service:<executable>, read from the resource below
    ({"OTEL_SERVICE_NAME": "checkout"}, None, "checkout"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=billing,team=x"}, None, "billing"),
    ({"OTEL_SERVICE_NAME": "checkout"}, "mystocks-api", "mystocks-api"),
])
def test_health_names_the_service_target_info_names(monkeypatch, env, chosen, expected):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with capture_metrics(**({"service_name": chosen} if chosen else {})):
        app = FastAPI()
        setup_telemetry(app)
        client = TestClient(app)
        service = client.get("/metrics/health").json()["service"]
        target_info = next(line for line in client.get("/metrics").text.splitlines()
                           if line.startswith("target_info{"))
        resource_name = state.provider().resource.attributes["service.name"]
    assert service == (expected or resource_name)
    if expected is None:
        assert service.startswith("unknown_service:")
    assert f'service_name="{service}"' in target_info
