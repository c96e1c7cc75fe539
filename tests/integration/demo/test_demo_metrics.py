"""End to end: the instrumented demo in its own uvicorn process, every route, the WebSocket,
every fault, then /metrics must carry every catalog metric and nothing outside the catalog.

A subprocess because the MeterProvider is process-wide: the pytest process keeps none.
"""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
import websockets.sync.client as ws_client
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from mystocks_otel.catalog import BY_PROMETHEUS_NAME, METRICS
from demo_support import uvicorn_demo
from support import free_port, wait_until

# Distinctive ids: if one ever shows up on /metrics, a label is unbounded.
USER = "metricsuser7f3a"
HAS_ALERT_WEBHOOK = importlib.util.find_spec("mystocks_otel.alert_webhook") is not None


def _exercise_routes(http: httpx.Client) -> None:
    for _ in range(2):
        assert http.get("/api/quotes/AAPL").status_code == 200  # a miss, then a hit
    assert http.get("/api/quotes/NOPE").status_code == 404
    assert http.get("/api/quotes").status_code == 200
    market = http.post("/api/orders", json={"user_id": USER, "symbol": "AAPL", "side": "buy",
                                            "type": "market", "quantity": 1})
    resting = http.post("/api/orders", json={"user_id": USER, "symbol": "AAPL", "side": "sell",
                                             "type": "limit", "quantity": 1, "price": 1e6})
    assert market.status_code == resting.status_code == 201
    assert http.post("/api/orders", json={"user_id": USER, "symbol": "AAPL", "side": "hold",
                                          "type": "market", "quantity": 1}).status_code == 422
    assert http.get(f"/api/orders/{market.json()['id']}").status_code == 200
    assert http.delete(f"/api/orders/{resting.json()['id']}").status_code == 200
    for quantity in (5, 7, 0):  # add, update, remove
        assert http.post(f"/api/portfolio/{USER}/positions", json={"symbol": "MSFT", "quantity": quantity}).status_code == 200
    assert http.get(f"/api/portfolio/{USER}").status_code == 200
    assert http.post(f"/api/watchlist/{USER}", json={"symbol": "TSLA"}).status_code == 201
    assert http.get(f"/api/watchlist/{USER}").status_code == 200
    assert http.delete(f"/api/watchlist/{USER}", params={"symbol": "TSLA"}).status_code == 200
    assert http.post("/api/sessions", json={"user_id": USER, "password": "wrong"}).status_code == 401
    for platform in ("web", "smart-fridge"):  # the second is outside the platform set: "other"
        login = http.post("/api/sessions", json={"user_id": USER, "password": "pw", "platform": platform})
        assert login.status_code == 201
    assert http.delete(f"/api/sessions/{login.json()['session_id']}").status_code == 200
    assert http.get(f"/api/{USER}/unknown-path").status_code == 404
    assert http.get("/health").status_code == 200


def _exercise_websocket(base: str) -> None:
    url = base.replace("http://", "ws://") + "/ws/quotes"
    with ws_client.connect(url, open_timeout=5, close_timeout=2) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        ws.send(json.dumps({"subscribe": ["AAPL"]}))
        for _ in range(50):
            if json.loads(ws.recv(timeout=5))["type"] == "subscribed":
                break
        ws.send(b"ping")
        for _ in range(50):
            if ws.recv(timeout=5) == b"pong":
                break
        else:
            raise AssertionError("no pong")
    # An abnormal close: the client reports an internal error (1011). (A bare TCP drop is not
    # used: uvicorn reports it to the app as 1005, which counts as a normal close.)
    with ws_client.connect(url, open_timeout=5, close_timeout=2) as failing:
        failing.recv(timeout=5)
        failing.close(code=1011, reason="client crashed")
    # A rejected handshake: no WebSocket route there.
    with pytest.raises(InvalidStatus):
        ws_client.connect(base.replace("http://", "ws://") + "/ws/nowhere", open_timeout=5)


def _exercise_faults(http: httpx.Client) -> None:
    def faults(**body):
        response = http.post("/admin/faults", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    faults(latency_ms=20)
    assert http.get("/api/quotes").status_code == 200
    faults(latency_ms=0, error_rate=1)
    assert http.get("/api/quotes").status_code == 500
    faults(error_rate=0, slow_queries=True, slow_query_seconds=0.15)
    assert http.get("/api/quotes").status_code == 200  # over MYSTOCKS_OTEL_SLOW_QUERY_SECONDS
    faults(slow_queries=False, cache_flush=True)
    faults(market_data_stall=True)
    _until_sample(http, "mystocks_market_data_feed_errors_total", reason="stalled")  # stalled ticks
    faults(market_data_stall=False, dependency_down="redis")
    _until_sample(http, "mystocks_data_quality_anomalies_total", kind="gap")  # a tick after the stall
    assert http.get("/api/quotes/AAPL").status_code == 503
    faults(dependency_down="database")
    assert http.get("/api/quotes").status_code == 503
    assert http.get("/health").json()["components"]["database"] is False  # a probe sees it down
    faults(dependency_down=None)
    assert http.get("/health").json()["components"]["database"] is True  # and back
    actions = faults(db_error=True, cache_error=True, bad_measurements=True)["actions"]
    assert actions["db_error"].startswith("OperationalError")
    assert actions["cache_error"].startswith("ResponseError")


def _sample(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def _until_sample(http: httpx.Client, name: str, **labels: str) -> None:
    """Poll /metrics until ``name{labels}`` has a positive sample."""
    wait_until(lambda: _sample(http.get("/metrics").text, name, **labels) > 0, 10,
               f"{name}{labels} on /metrics", interval=0.05)


def _exercise_alert_webhook(http: httpx.Client) -> None:
    alert = {"labels": {"alertname": "DemoHighLatency", "severity": "warning", "category": "api"},
             "annotations": {"summary": "demo"}, "startsAt": "2026-11-24T00:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
             "fingerprint": "d3m0f1n63rpr1n7"}
    payload = {"version": "4", "groupKey": "{}:{alertname=\"DemoHighLatency\"}", "truncatedAlerts": 0,
               "status": "firing", "receiver": "webhook", "groupLabels": {"alertname": "DemoHighLatency"},
               "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
               "externalURL": "http://alertmanager:9093", "alerts": [{**alert, "status": "firing"}]}
    assert http.post("/alerts/webhook", json=payload).status_code < 300
    resolved = {**alert, "status": "resolved", "endsAt": "2026-11-24T00:05:00Z"}
    assert http.post("/alerts/webhook", json={**payload, "status": "resolved", "alerts": [resolved]}).status_code < 300


def test_every_catalog_metric_is_on_metrics_and_nothing_else(tmp_path, throwaway_redis):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "REDIS_URL": throwaway_redis["url"],
        "MYSTOCKS_DEMO_TICK_SECONDS": "0.05",
        "MYSTOCKS_DEMO_HEALTH_SECONDS": "0.2",
        "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": "0.1",
        "MYSTOCKS_OTEL_PROBE_INTERVAL": "0.5",
        "MYSTOCKS_OTEL_HTTP_BODY_SIZE": "true",  # the body-size histograms are off by default
        # OTLP to a port nothing listens on: the export-failure counter gets its samples.
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        # Traces and logs to the same dead port: their drop counters get samples too.
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "MYSTOCKS_OTEL_TRACES_KEEP_RATIO": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }
    with uvicorn_demo(env, log_path=tmp_path / "uvicorn.log") as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            _exercise_routes(http)
            _exercise_websocket(base)
            _exercise_faults(http)
            if HAS_ALERT_WEBHOOK:
                _exercise_alert_webhook(http)
            # The core probes (system, pool and health gauges) run every 0.5 s: poll until
            # every catalog metric has a sample; the asserts below name any still missing.
            expected = [spec for spec in METRICS if HAS_ALERT_WEBHOOK or spec.domain != "alert"]
            scraped = {}

            def complete() -> bool:
                scraped["response"] = response = http.get("/metrics")
                names = {s.name for f in text_string_to_metric_families(response.text) for s in f.samples}
                return all(set(spec.prometheus_series) & names for spec in expected)

            try:
                wait_until(complete, 10, "every catalog metric on /metrics", interval=0.2)
            except AssertionError:
                pass
            response = scraped["response"]
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    samples = {s.name for f in families for s in f.samples}

    missing = [spec.prometheus_name for spec in expected if not set(spec.prometheus_series) & samples]
    assert not missing, f"catalog metrics with no sample on /metrics: {missing}"

    catalog_names = set(BY_PROMETHEUS_NAME)
    stray = sorted(f.name for f in families if f.name.startswith("mystocks_")
                   and f.name not in catalog_names and f.name + "_total" not in catalog_names)
    assert not stray, f"mystocks_ families not in the catalog: {stray}"

    # Each exercise left its mark, with the label values the demo promises.
    def value(name: str, **labels: str) -> float:
        return sum(s.value for f in families for s in f.samples
                   if s.name == name and labels.items() <= s.labels.items())

    marks = {
        ("mystocks_cache_hits_total", (("cache", "redis"),)),
        ("mystocks_cache_misses_total", (("cache", "redis"),)),
        ("mystocks_db_slow_queries_total", (("table", "quotes"),)),
        ("mystocks_db_query_errors_total", (("error_type", "OperationalError"),)),
        ("mystocks_redis_command_errors_total", (("error_type", "ResponseError"),)),
        ("mystocks_market_data_feed_errors_total", (("reason", "stalled"),)),
        ("mystocks_data_quality_anomalies_total", (("kind", "gap"),)),
        ("mystocks_market_data_points_processed_total", (("source", "simulator"), ("data_type", "quote"))),
        ("mystocks_trading_orders_total", (("status", "rejected"), ("side", "other"))),
        ("mystocks_trading_orders_total", (("status", "cancelled"),)),
        ("mystocks_user_logins_total", (("result", "failure"),)),
        ("mystocks_user_sessions_started_total", (("platform", "other"),)),
        ("mystocks_user_portfolio_updates_total", (("operation", "remove"),)),
        ("mystocks_user_watchlist_operations_total", (("operation", "view"),)),
        ("mystocks_websocket_messages_total", (("direction", "received"), ("message_type", "binary"))),
        ("mystocks_websocket_connection_errors_total", (("reason", "abnormal_close"),)),
        ("mystocks_telemetry_dropped_measurements_total", (("reason", "nan"),)),
        ("mystocks_health_dependency_availability", (("dependency", "sqlite"),)),
        ("http_server_request_duration_seconds_count", (("http_response_status_code", "503"),)),
        ("http_server_request_duration_seconds_count", (("http_response_status_code", "500"),)),
    }
    absent = sorted((name, dict(labels)) for name, labels in marks if value(name, **dict(labels)) <= 0)
    assert not absent, f"no positive sample for {absent}"

    # Path parameters never become label values.
    assert USER not in response.text and "AAPL" not in response.text and "unknown-path" not in response.text
    routes = {s.labels.get("http_route") for f in families for s in f.samples if "http_route" in s.labels}
    assert {"/api/quotes/{symbol}", "/api/portfolio/{user_id}", "/api/orders/{order_id}"} <= routes
