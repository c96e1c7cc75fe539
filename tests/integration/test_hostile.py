"""Hostile input never explodes cardinality, memory, or the caller (a real app process)."""

from __future__ import annotations

import http.client
import json
import shutil
import uuid
from pathlib import Path

import pytest

from harness import base_env, run_process, scrape, series, uvicorn_argv
from support import free_port

pytestmark = pytest.mark.live

APP_SOURCE = Path(__file__).parent / "apps" / "hostile_app.py"
LIMIT = 100
ROUND = 20_000


@pytest.fixture(scope="module")
def app_port(tmp_path_factory):
    app_dir = tmp_path_factory.mktemp("hostile")
    shutil.copy(APP_SOURCE, app_dir / "hostile_app.py")
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_CARDINALITY_LIMIT=str(LIMIT),
                   MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("hostile_app:app", port, instrument=False), app_dir, env) as proc:
        proc.wait_port(port)
        yield port
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


class Client:
    """One keep-alive connection; thousands of requests in a few seconds."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str) -> tuple[int, bytes]:
        self.conn.request(method, path)
        response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str) -> dict:
        status, body = self.call(method, path)
        assert status == 200, body
        return json.loads(body)


def test_random_paths_make_one_404_series(app_port):
    client = Client(app_port)
    for _ in range(5_000):
        assert client.call("GET", f"/{uuid.uuid4().hex}/{uuid.uuid4().hex[:6]}")[0] == 404
    text = scrape(app_port)
    not_found = [s for s in series(text, "http_server_request_duration_seconds_count")
                 if s.labels["http_response_status_code"] == "404"]
    assert len(not_found) == 1, not_found
    assert not not_found[0].labels.get("http_route")
    assert not_found[0].value == 5_000


def test_path_params_make_series_by_template_only(app_port):
    client = Client(app_port)
    for i in range(2_500):
        assert client.call("GET", f"/sym/SYM{i}")[0] == 200
        assert client.call("GET", f"/users/{uuid.uuid4()}/portfolio")[0] == 200
    ok = [s for s in series(scrape(app_port), "http_server_request_duration_seconds_count")
          if s.labels["http_response_status_code"] == "200"]
    by_route = {s.labels["http_route"]: s.value for s in ok}
    assert by_route == {"/sym/{symbol}": 2_500, "/users/{user_id}/portfolio": 2_500}


def _total(text: str, name: str, **match) -> float:
    return sum(s.value for s in series(text, name)
               if all(s.labels.get(k) == v for k, v in match.items()))


def test_bogus_label_values_are_bounded_and_totals_kept(app_port):
    client = Client(app_port)
    client.json("POST", "/hostile/1")
    text = scrape(app_port)

    orders = series(text, "mystocks_trading_orders_total")
    assert [(s.labels["side"], s.labels["type"], s.labels["status"]) for s in orders] \
        == [("other", "other", "other")], "bounded labels collapse to 'other'"
    assert orders[0].value == ROUND

    messages = series(text, "mystocks_websocket_messages_total")
    overflow = [s for s in messages if s.labels.get("otel_metric_overflow") == "true"]
    assert len(messages) <= LIMIT + 1 and len(overflow) == 1, len(messages)
    assert sum(s.value for s in messages) == ROUND, "totals preserved across the overflow"

    http = series(text, "http_server_request_duration_seconds_count")
    assert len(http) <= LIMIT + 1
    assert any(s.labels.get("otel_metric_overflow") == "true" for s in http)

    sanitized = "mystocks_telemetry_sanitized_attributes_total"
    assert _total(text, sanitized, metric="mystocks.trading.orders",
                  reason="value_not_allowed") >= ROUND
    assert _total(text, sanitized, metric="mystocks.websocket.messages",
                  reason="overflow") >= ROUND - LIMIT


def test_memory_is_bounded_under_hostile_values(app_port):
    client = Client(app_port)
    client.json("POST", "/hostile/2")  # warm: every structure at its bound
    before = client.json("GET", "/rss")["rss"]
    after = client.json("POST", "/hostile/3")["rss"]
    scrape(app_port)
    growth_mb = (after - before) / 2**20
    assert growth_mb < 4, f"RSS grew {growth_mb:.1f} MB over {ROUND} new hostile values"


def test_garbage_never_raises_and_is_counted(app_port):
    client = Client(app_port)
    text_before = scrape(app_port)
    result = client.json("POST", "/garbage")
    assert result["raised"] == {}, result["raised"]
    text = scrape(app_port)
    dropped = "mystocks_telemetry_dropped_measurements_total"

    def grew(**match) -> bool:
        return _total(text, dropped, **match) > _total(text_before, dropped, **match)

    assert grew(metric="mystocks.trading.orders", reason="negative")
    assert grew(metric="mystocks.trading.orders", reason="nan")
    assert grew(metric="mystocks.trading.order_latency", reason="nan")
    assert grew(metric="mystocks.trading.order_latency", reason="error")
    assert grew(metric="mystocks.market_data.symbols_tracked", reason="nan")
    assert grew(reason="error")
    sanitized = "mystocks_telemetry_sanitized_attributes_total"
    assert _total(text, sanitized, metric="mystocks.trading.orders", reason="unknown_key") >= 1


def test_infinite_values_are_dropped_not_poisoning(app_port):
    """record(counter, inf) once must not make the series vanish for the life of the process."""
    client = Client(app_port)
    client.json("POST", "/infinite")
    text = scrape(app_port)
    rejected = [s for s in series(text, "mystocks_trading_orders_total")
                if s.labels["status"] == "rejected"]
    assert [s.value for s in rejected] == [3.0], "sell/stop/rejected: 1 + 1 + record_order"
    assert series(text, "mystocks_data_quality_completeness_ratio"), "last good value kept"
    dropped = "mystocks_telemetry_dropped_measurements_total"
    assert _total(text, dropped, metric="mystocks.trading.orders") >= 1
    assert _total(text, dropped, metric="mystocks.trading.order_latency") >= 1
