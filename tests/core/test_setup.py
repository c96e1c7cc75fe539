"""setup_telemetry end to end, each scenario in a fresh interpreter (the provider is process-wide)."""

import pytest
from core_helpers import run_scenario, samples, series

from mystocks_otel import catalog

DURATION = "http_server_request_duration_seconds_count"


def test_http_metrics_use_route_templates_and_unknown_paths_share_one_series():
    result = run_scenario("""
        app = make_app(); setup_telemetry(app); client = TestClient(app, raise_server_exceptions=False)
        for i in range(300):
            client.get(f"/api/quotes/SYM{i}?user=alice@example.com")
            client.get(f"/random/{i}/path")
        client.get("/boom")
        client.get("/metrics"); client.get("/metrics/health")
        done(body=client.get("/metrics").text)
    """)
    durations = series(result["body"], DURATION)
    routes = {(lbl.get("http_route", ""), lbl["http_response_status_code"]): v for lbl, v in durations}
    assert routes[("/api/quotes/{symbol}", "200")] == 300
    assert routes[("", "404")] == 300  # every unknown path in one series
    assert routes[("/boom", "500")] == 1
    assert len(durations) == 3  # /metrics and /metrics/health are excluded by default
    assert "SYM1" not in result["body"] and "alice" not in result["body"]
    labels = durations[0][0]
    assert set(labels) >= {"http_request_method", "http_response_status_code"}


def test_setup_twice_is_a_no_op_and_a_second_app_shares_the_provider():
    result = run_scenario("""
        from mystocks_otel import provider
        first, second = make_app(), make_app()
        handle = setup_telemetry(first)
        again = setup_telemetry(first)
        state = provider.current()
        setup_telemetry(second)
        from mystocks_otel.asgi import layers  # the layer wraps the app's built stack
        middleware = [type(layer).__name__ for layer in layers(first)]
        TestClient(second).get("/api/quotes/X")
        body = TestClient(first).get("/metrics").text
        done(same=handle is again, same_provider=provider.current() is state,
             middleware=middleware, body=body, second_has_metrics=TestClient(second).get("/metrics").status_code)
    """)
    assert result["same"] and result["same_provider"]
    assert result["middleware"].count("MetricsMiddleware") == 1
    assert result["second_has_metrics"] == 200
    # the second app's request is visible through the first app's /metrics: one provider
    assert any(lbl.get("http_route") == "/api/quotes/{symbol}" for lbl, _ in series(result["body"], DURATION))


def test_endpoints_health_list_token_and_schema():
    result = run_scenario("""
        app = make_app(); setup_telemetry(app); client = TestClient(app)
        no_token = client.get("/metrics").status_code
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code
        ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        done(no_token=no_token, wrong=wrong, ok=ok.status_code, content_type=ok.headers["content-type"],
             health=client.get("/metrics/health").json(), listing=client.get("/metrics/list").json(),
             paths=list(client.get("/openapi.json").json()["paths"]))
    """, env={"MYSTOCKS_OTEL_METRICS_TOKEN": "s3cret"})
    assert (result["no_token"], result["wrong"], result["ok"]) == (401, 401, 200)
    assert result["content_type"].startswith("text/plain")
    health = result["health"]
    assert health["status"] == "ok" and health["readers"] == ["prometheus"]
    assert health["last_collection"]["bytes"] > 0
    assert health["components"]["exporter"] is True
    listing = result["listing"]
    assert listing["count"] == len(catalog.METRICS)
    by_name = {m["name"]: m for m in listing["metrics"]}
    orders = by_name["mystocks.trading.orders"]
    assert orders["prometheus_name"] == "mystocks_trading_orders_total"
    assert orders["priority"] == "P0" and orders["type"] == "counter"
    assert set(orders["labels"]) == {"side", "type", "status"}
    assert result["paths"] == ["/api/quotes/{symbol}", "/boom"]


def test_websocket_metrics():
    result = run_scenario("""
        app = make_app(); setup_telemetry(app); client = TestClient(app)
        for _ in range(3):
            with client.websocket_connect("/ws/quotes") as ws:
                ws.send_text("hello"); ws.receive_text(); ws.receive_bytes()
        try:
            with client.websocket_connect("/ws/unknown") as ws:
                pass
        except Exception:
            pass
        done(body=client.get("/metrics").text)
    """)
    body = result["body"]
    messages = {(l["direction"], l["message_type"]): v for l, v in series(body, "mystocks_websocket_messages_total")
                if l.get("namespace") == "/ws/quotes"}
    assert messages == {("received", "text"): 3, ("sent", "text"): 3, ("sent", "binary"): 3}
    assert series(body, "mystocks_websocket_connections_opened_total") == [({"namespace": "/ws/quotes"}, 3)]
    assert series(body, "mystocks_websocket_active_connections") == [({"namespace": "/ws/quotes"}, 0)]
    assert series(body, "mystocks_websocket_connection_duration_seconds_count") == [({"namespace": "/ws/quotes"}, 3)]
    rejected = [v for l, v in series(body, "mystocks_websocket_connection_errors_total") if l["reason"] == "rejected"]
    assert rejected == [1]


def test_every_catalog_metric_is_exposed_under_its_derived_prometheus_name():
    result = run_scenario("""
        from mystocks_otel import catalog, record
        from mystocks_otel.recorders import update_system_metrics
        app = make_app(); setup_telemetry(app, system_metrics=False)
        for spec in catalog.METRICS:
            attrs = {l.key: sorted(l.values)[0] if l.values else "x" for l in spec.labels}
            record(spec.name, 1.0, attrs)
        done(body=TestClient(app).get("/metrics").text)
    """)
    names = {name for name, _, _ in samples(result["body"])}
    for spec in catalog.METRICS:
        for sample in spec.prometheus_series:
            assert sample in names, f"{spec.name}: expected {sample} on /metrics"
    ours = {n for n in names if n.startswith("mystocks_")}
    known = {s for spec in catalog.METRICS for s in spec.prometheus_series}
    assert ours <= known, ours - known


def test_tracing_adds_spans_but_never_duplicate_series():
    result = run_scenario("""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
        app = make_app(); setup_telemetry(app, tracer_provider=tp); client = TestClient(app)
        client.get("/api/quotes/A")
        done(body=client.get("/metrics").text, spans=[s.name for s in exporter.get_finished_spans()])
    """)
    assert any("/api/quotes/{symbol}" in name for name in result["spans"])
    names = {name for name, _, _ in samples(result["body"])}
    assert DURATION in names
    assert not any(n.startswith(("http_server_duration", "http_server_active_requests_total")) for n in names)
    assert len(series(result["body"], DURATION)) == 1


def test_resource_comes_from_otel_environment():
    result = run_scenario("""
        app = make_app(); setup_telemetry(app)
        done(body=TestClient(app).get("/metrics").text)
    """, env={"OTEL_SERVICE_NAME": "quotes-api", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
    (labels, _), = series(result["body"], "target_info")
    assert labels["service_name"] == "quotes-api"
    assert labels["deployment_environment"] == "test"
    assert labels["service_instance_id"]


def test_bad_configuration_raises_config_error_from_setup():
    result = run_scenario("""
        try:
            setup_telemetry(make_app())
        except mystocks_otel.ConfigError as error:
            done(error=str(error))
    """, env={"MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": "abc"})
    assert result["error"].startswith("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS='abc' is invalid")


def test_sdk_disabled_does_nothing():
    result = run_scenario("""
        app = make_app(); handle = setup_telemetry(app)
        done(enabled=handle.enabled, status=TestClient(app).get("/metrics").status_code)
    """, env={"OTEL_SDK_DISABLED": "true"})
    assert result == {"enabled": False, "status": 404}


def test_recorders_work_before_setup_and_are_exported_after():
    result = run_scenario("""
        from mystocks_otel import record_order, record_cache_event
        record_order("buy", "market", "filled")
        record_cache_event("hit"); record_cache_event("miss"); record_cache_event("hit")
        app = make_app(); setup_telemetry(app)
        done(body=TestClient(app).get("/metrics").text)
    """)
    body = result["body"]
    assert series(body, "mystocks_trading_orders_total")[0][1] == 1
    assert series(body, "mystocks_cache_hit_ratio") == [({"cache": "redis"}, pytest.approx(2 / 3))]


def test_histograms_use_the_catalogs_seconds_buckets():
    result = run_scenario("""
        app = make_app(); setup_telemetry(app); client = TestClient(app)
        client.get("/api/quotes/A")
        done(body=client.get("/metrics").text)
    """)
    bounds = [float(l["le"]) for l, _ in series(result["body"], "http_server_request_duration_seconds_bucket")]
    expected = list(catalog.get("http.server.request.duration").buckets) + [float("inf")]
    assert bounds == expected


def test_the_demo_names_itself_unless_otel_service_name_says_otherwise():
    code = """
        from mystocks_otel.demo.app import create_app
        done(body=TestClient(create_app()).get("/metrics").text)
    """
    (labels, _), = series(run_scenario(code)["body"], "target_info")
    assert labels["service_name"] == "mystocks-api"
    (labels, _), = series(run_scenario(code, env={"OTEL_SERVICE_NAME": "demo-2"})["body"], "target_info")
    assert labels["service_name"] == "demo-2"
