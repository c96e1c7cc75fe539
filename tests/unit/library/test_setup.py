"""setup_telemetry end to end where a fresh interpreter is the point: recording before any
set-up, the endpoints and token read at start-up, and the demo's own service name. The
rest runs in one process on ``mystocks_otel.testing`` (test_telemetry.py, test_runtime.py)."""

import pytest
from core_helpers import run_scenario, series

from mystocks_otel import catalog


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


def test_the_demo_names_itself_unless_otel_service_name_says_otherwise():
    code = """
        from mystocks_otel_dev.demo.app import create_app
        done(body=TestClient(create_app()).get("/metrics").text)
    """
    (labels, _), = series(run_scenario(code)["body"], "target_info")
    assert labels["service_name"] == "mystocks-api"
    (labels, _), = series(run_scenario(code, env={"OTEL_SERVICE_NAME": "demo-2"})["body"], "target_info")
    assert labels["service_name"] == "demo-2"
