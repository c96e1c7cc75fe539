"""setup_telemetry in one process, on the in-memory reader of ``mystocks_otel.testing``.

Each test gets a reset process (the ``mystocks_metrics`` fixture); fork, distro and
start-up exit cases stay in subprocesses (test_setup.py, tests/integration/library/test_distro.py).
"""

from __future__ import annotations

import pytest
from core_helpers import make_app, samples, series
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

import mystocks_otel
from mystocks_otel import catalog, setup_telemetry
from mystocks_otel._internal import provider, runtime
from mystocks_otel.testing import capture_metrics

DURATION = "http.server.request.duration"


# -- the helper itself ---------------------------------------------------------------------


def test_each_capture_starts_from_zero_and_leaves_nothing_running():
    for _ in range(2):
        with capture_metrics() as metrics:
            app = make_app()
            setup_telemetry(app, system_metrics=False)
            mystocks_otel.record_order("buy", "market", "filled")
            TestClient(app).get("/api/quotes/A")
            assert metrics.value("mystocks.trading.orders", {"side": "buy"}) == 1
            assert metrics.count(DURATION, {"http.route": "/api/quotes/{symbol}"}) == 1
            assert runtime.current() is not None
        assert runtime.current() is None and provider.current() is None
        assert all(runtime.instrumented(name) is None for name in ("fastapi", "sqlalchemy", "redis"))


def test_points_filter_by_attributes_and_reject_unknown_names(mystocks_metrics):
    mystocks_otel.record_order("buy", "market", "filled")
    mystocks_otel.record_order("sell", "limit", "rejected")
    assert mystocks_metrics.value("mystocks.trading.orders") == 2
    assert mystocks_metrics.value("mystocks.trading.orders", {"side": "sell"}) == 1
    assert mystocks_metrics.value("mystocks.trading.orders", {"side": "nope"}) == 0
    with pytest.raises(KeyError):
        mystocks_metrics.points("mystocks.trading.order")  # a typo fails loudly
    with pytest.raises(TypeError, match="histogram"):
        mystocks_otel.record_db_query("SELECT", 0.01)
        mystocks_metrics.value("mystocks.db.query_duration")



# -- setup_telemetry end to end (moved here from test_setup.py's subprocesses) ---------------

PROM_DURATION = "http_server_request_duration_seconds_count"


def test_http_metrics_use_route_templates_and_unknown_paths_share_one_series(mystocks_metrics):
    app = make_app()
    setup_telemetry(app, system_metrics=False)
    client = TestClient(app, raise_server_exceptions=False)
    for i in range(300):
        client.get(f"/api/quotes/SYM{i}?user=alice@example.com")
        client.get(f"/random/{i}/path")
    client.get("/boom")
    client.get("/metrics")
    client.get("/metrics/health")
    body = client.get("/metrics").text
    durations = series(body, PROM_DURATION)
    routes = {(lbl.get("http_route", ""), lbl["http_response_status_code"]): v for lbl, v in durations}
    assert routes[("/api/quotes/{symbol}", "200")] == 300
    assert routes[("", "404")] == 300  # every unknown path in one series
    assert routes[("/boom", "500")] == 1
    assert len(durations) == 3  # /metrics and /metrics/health are excluded by default
    assert "SYM1" not in body and "alice" not in body
    assert set(durations[0][0]) >= {"http_request_method", "http_response_status_code"}


def test_setup_twice_is_a_no_op_and_a_second_app_shares_the_provider(mystocks_metrics):
    from mystocks_otel._internal.asgi import layers  # the layer wraps the app's built stack

    first, second = make_app(), make_app()
    handle = setup_telemetry(first)
    assert setup_telemetry(first) is handle
    state = provider.current()
    setup_telemetry(second)
    assert provider.current() is state
    assert [type(layer).__name__ for layer in layers(first)] == ["MetricsMiddleware"]
    TestClient(second).get("/api/quotes/X")
    assert TestClient(second).get("/metrics").status_code == 200
    # the second app's request is visible through the first app's /metrics: one provider
    body = TestClient(first).get("/metrics").text
    assert any(lbl.get("http_route") == "/api/quotes/{symbol}" for lbl, _ in series(body, PROM_DURATION))


def test_websocket_metrics(mystocks_metrics):
    app = make_app()
    setup_telemetry(app, system_metrics=False)
    client = TestClient(app)
    for _ in range(3):
        with client.websocket_connect("/ws/quotes") as ws:
            ws.send_text("hello")
            ws.receive_text()
            ws.receive_bytes()
    with pytest.raises(Exception):
        with client.websocket_connect("/ws/unknown"):
            pass
    body = client.get("/metrics").text
    messages = {(lbl["direction"], lbl["message_type"]): v
                for lbl, v in series(body, "mystocks_websocket_messages_total")
                if lbl.get("namespace") == "/ws/quotes"}
    assert messages == {("received", "text"): 3, ("sent", "text"): 3, ("sent", "binary"): 3}
    assert series(body, "mystocks_websocket_connections_opened_total") == [({"namespace": "/ws/quotes"}, 3)]
    assert series(body, "mystocks_websocket_active_connections") == [({"namespace": "/ws/quotes"}, 0)]
    assert series(body, "mystocks_websocket_connection_duration_seconds_count") \
        == [({"namespace": "/ws/quotes"}, 3)]
    rejected = [v for lbl, v in series(body, "mystocks_websocket_connection_errors_total")
                if lbl["reason"] == "rejected"]
    assert rejected == [1]


def test_every_catalog_metric_is_exposed_under_its_derived_prometheus_name(mystocks_metrics):
    app = make_app()
    setup_telemetry(app, system_metrics=False)
    for spec in catalog.METRICS:
        attributes = {lbl.key: sorted(lbl.values)[0] if lbl.values else "x" for lbl in spec.labels}
        mystocks_otel.record(spec.name, 1.0, attributes)
    names = {name for name, _, _ in samples(TestClient(app).get("/metrics").text)}
    for spec in catalog.METRICS:
        for sample in spec.prometheus_series:
            assert sample in names, f"{spec.name}: expected {sample} on /metrics"
    ours = {n for n in names if n.startswith("mystocks_")}
    known = {s for spec in catalog.METRICS for s in spec.prometheus_series}
    assert ours <= known, ours - known


def test_tracing_adds_spans_but_never_duplicate_series(mystocks_metrics):
    app = make_app()
    setup_telemetry(app, tracer_provider=mystocks_metrics.tracer_provider, system_metrics=False)
    client = TestClient(app)
    client.get("/api/quotes/A")
    body = client.get("/metrics").text
    assert any("/api/quotes/{symbol}" in span.name for span in mystocks_metrics.spans())
    names = {name for name, _, _ in samples(body)}
    assert PROM_DURATION in names
    assert not any(n.startswith(("http_server_duration", "http_server_active_requests_total")) for n in names)
    assert len(series(body, PROM_DURATION)) == 1


def test_resource_comes_from_otel_environment(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "quotes-api")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    with capture_metrics():
        app = make_app()
        setup_telemetry(app, system_metrics=False)
        (labels, _), = series(TestClient(app).get("/metrics").text, "target_info")
    assert labels["service_name"] == "quotes-api"
    assert labels["deployment_environment"] == "test"
    assert labels["service_instance_id"]


def test_bad_configuration_raises_config_error_from_setup(mystocks_metrics, monkeypatch):
    monkeypatch.setenv("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "abc")
    with pytest.raises(mystocks_otel.ConfigError) as error:
        setup_telemetry(make_app())
    assert str(error.value).startswith("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS='abc' is invalid")


def test_sdk_disabled_does_nothing(mystocks_metrics, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = make_app()
    handle = setup_telemetry(app)
    assert not handle.enabled
    assert TestClient(app).get("/metrics").status_code == 404
    assert runtime.current() is None


def test_histograms_use_the_catalogs_seconds_buckets(mystocks_metrics):
    app = make_app()
    setup_telemetry(app, system_metrics=False)
    client = TestClient(app)
    client.get("/api/quotes/A")
    bounds = [float(lbl["le"]) for lbl, _ in
              series(client.get("/metrics").text, "http_server_request_duration_seconds_bucket")]
    assert bounds == [*catalog.get(DURATION).buckets, float("inf")]

# -- cardinality: the configured limit is the one in force ----------------------------------

OPENED = "mystocks.websocket.connections_opened"
OVERFLOW = catalog.OVERFLOW_ATTRIBUTE


def _opened(capture) -> tuple[dict, list]:
    points = capture.points(OPENED)
    normal = {p.attributes["namespace"]: p.value for p in points if OVERFLOW not in p.attributes}
    return normal, [p for p in points if OVERFLOW in p.attributes]


def test_a_limit_of_10000_keeps_10000_series_and_only_our_overflow_after():
    """The SDK's own default (2000 per metric) must not cap ours: 5,000 namespaces are
    5,000 series; 10,500 are 10,000 series and our one overflow series holding the rest."""
    with capture_metrics(cardinality_limit=10_000) as metrics:
        for i in range(5_000):
            mystocks_otel.record(OPENED, 1, {"namespace": f"/ws/{i}"})
        normal, overflow = _opened(metrics)
        assert len(normal) == 5_000 and not overflow

        for i in range(5_000, 10_500):
            mystocks_otel.record(OPENED, 1, {"namespace": f"/ws/{i}"})
        normal, overflow = _opened(metrics)
        assert len(normal) == 10_000
        assert set(normal) == {f"/ws/{i}" for i in range(10_000)}  # the first 10,000 kept
        assert [(dict(p.attributes), p.value) for p in overflow] == [({OVERFLOW: True}, 500)]
        text = metrics.prometheus_text()
        assert text.count("mystocks_websocket_connections_opened_total{") == 10_001


def test_a_small_limit_still_applies():
    with capture_metrics(cardinality_limit=3) as metrics:
        for i in range(5):
            mystocks_otel.record(OPENED, 1, {"namespace": f"/ws/{i}"})
        normal, overflow = _opened(metrics)
        assert sorted(normal) == ["/ws/0", "/ws/1", "/ws/2"]
        assert [p.value for p in overflow] == [2]


# -- the service name ---------------------------------------------------------------------


def _service_name(capture) -> str:
    mystocks_otel.record_order("buy", "market", "filled")  # something to collect
    return capture.reader.get_metrics_data().resource_metrics[0].resource.attributes["service.name"]


def test_without_otel_service_name_the_service_name_follows_opentelemetry(monkeypatch):
    from opentelemetry.sdk.resources import Resource

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    with capture_metrics() as metrics:
        name = _service_name(metrics)
    assert name == Resource.create({}).attributes["service.name"]  # the SDK's own default
    assert name.startswith("unknown_service")


def test_service_name_from_resource_attributes_is_honoured(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,team=x")
    with capture_metrics() as metrics:
        assert _service_name(metrics) == "from-attributes"


def test_otel_service_name_and_the_option_name_the_service(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "quotes-api")
    with capture_metrics() as metrics:
        assert _service_name(metrics) == "quotes-api"
    with capture_metrics(service_name="explicit") as metrics:
        assert _service_name(metrics) == "explicit"


# -- FastAPI's native telemetry: HTTP metrics are recorded once ------------------------------


def _native_app(**telemetry):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    theirs = InMemoryMetricReader()
    app = FastAPI(telemetry={"meter_provider": MeterProvider(metric_readers=[theirs]), **telemetry})

    @app.get("/items/{n}")
    def item(n: int):
        return n

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.close()

    return app, theirs


def _native_durations(reader) -> int:
    data = reader.get_metrics_data()
    return sum(point.count
               for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
               for metric in sm.metrics if metric.name == DURATION
               for point in metric.data.data_points)


def _exercise(app) -> None:
    client = TestClient(app)
    client.get("/items/1")
    with client.websocket_connect("/ws"):
        pass


def test_where_fastapi_measures_http_itself_we_do_not(mystocks_metrics):
    app, theirs = _native_app()
    setup_telemetry(app, system_metrics=False)
    _exercise(app)
    assert _native_durations(theirs) == 1  # FastAPI's native metrics, as the app configured
    assert mystocks_metrics.count(DURATION) == 0  # ... and not a second time by us
    assert mystocks_metrics.value("mystocks.websocket.connections_opened", {"namespace": "/ws"}) == 1


def test_with_fastapis_metrics_off_ours_measure_http(mystocks_metrics):
    app, theirs = _native_app(metrics=False)
    setup_telemetry(app, system_metrics=False)
    _exercise(app)
    assert _native_durations(theirs) == 0
    assert mystocks_metrics.count(DURATION, {"http.route": "/items/{n}"}) == 1


def test_without_a_meter_provider_for_fastapi_ours_measure_http(mystocks_metrics):
    app = make_app()  # FastAPI's telemetry is on by default, with no provider configured
    setup_telemetry(app, system_metrics=False)
    TestClient(app).get("/api/quotes/A")
    assert mystocks_metrics.count(DURATION, {"http.route": "/api/quotes/{symbol}"}) == 1


# -- promtool's lint: one known exception ---------------------------------------------------


def test_promtool_flags_only_the_semconv_connection_count(mystocks_metrics, promtool):
    """``db_client_connection_count`` is the current semantic-conventions name of a gauge
    (``db.client.connection.count``); promtool reads ``_count`` as a histogram/summary suffix.
    We keep the name on purpose (README): it must stay the only complaint."""
    import subprocess

    for spec in catalog.METRICS:
        attributes = {label.key: sorted(label.values)[0] if label.values else "x" for label in spec.labels}
        mystocks_otel.record(spec.name, 1.0, attributes)
    proc = subprocess.run([promtool, "check", "metrics"], input=mystocks_metrics.prometheus_text(),
                          capture_output=True, text=True, timeout=60)
    problems = set((proc.stdout + proc.stderr).strip().splitlines())
    assert problems == {'db_client_connection_count non-histogram and non-summary metrics should '
                        'not have "_count" suffix'}
