"""The fault switches at /admin/faults: validation, and an observable effect for each."""

from __future__ import annotations

import time

import pytest
import redis

from support import holds_for, wait_until

DEFAULTS = {"latency_ms": 0, "error_rate": 0.0, "slow_queries": False, "slow_query_seconds": 0.5,
            "market_data_stall": False, "dependency_down": None, "cache_errors": False}


def _set(client, **switches):
    response = client.post("/admin/faults", json=switches)
    assert response.status_code == 200, response.text
    return response.json()


def _timed(client, path: str):
    started = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - started


def test_defaults_and_reset(client):
    assert client.get("/admin/faults").json() == {"faults": DEFAULTS}
    _set(client, latency_ms=5, error_rate=0.5, dependency_down="redis")
    assert client.delete("/admin/faults").json() == {"faults": DEFAULTS}


@pytest.mark.parametrize(("body", "message"), [
    ({"latency_ms": -1}, "latency_ms must be from 0 to 30000"),
    ({"latency_ms": 1.5}, "latency_ms must be a whole number"),
    ({"latency_ms": True}, "latency_ms must be a number"),
    ({"error_rate": 1.5}, "error_rate must be from 0 to 1"),
    ({"error_rate": "0.5"}, "error_rate must be a number"),
    ({"slow_queries": "yes"}, "slow_queries must be true or false"),
    ({"slow_query_seconds": 0}, "slow_query_seconds must be above 0"),
    ({"dependency_down": "kafka"}, "dependency_down must be one of redis, database or null"),
    ({"chaos_monkey": True}, "unknown field 'chaos_monkey'"),
    ([1, 2], "the body must be a JSON object"),
])
def test_bad_values_are_refused_with_a_clear_message(client, body, message):
    response = client.post("/admin/faults", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_invalid_json_is_400_and_a_refused_body_changes_nothing(client):
    response = client.post("/admin/faults", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert client.post("/admin/faults", json={"latency_ms": 50, "error_rate": 7}).status_code == 422
    assert client.get("/admin/faults").json()["faults"]["latency_ms"] == 0, "validated as a whole"


def test_latency_is_added_to_api_routes_only(client):
    # 1.5 s: far above what a request takes on a loaded machine, so "not delayed" cannot flake
    _set(client, latency_ms=1500)
    response, elapsed = _timed(client, "/api/quotes")
    assert response.status_code == 200 and elapsed >= 1.5
    _, health_elapsed = _timed(client, "/health")
    assert health_elapsed < 1.5, "operations routes are not delayed"
    _set(client, latency_ms=0)
    assert _timed(client, "/api/quotes")[1] < 1.5


def test_error_rate_one_fails_every_api_request(client):
    _set(client, error_rate=1)
    statuses = {client.get(path).status_code for path in
                ("/api/quotes", "/api/quotes/AAPL", "/api/watchlist/u1", "/api/portfolio/u1")}
    assert statuses == {500}
    assert client.get("/api/quotes").json()["detail"] == "injected fault: error_rate"
    assert client.get("/health").status_code == 200
    _set(client, error_rate=0)
    assert client.get("/api/quotes").status_code == 200


def test_error_rate_is_a_share(client):
    _set(client, error_rate=0.5)
    statuses = [client.get("/api/quotes").status_code for _ in range(200)]
    # Binomial(200, 0.5): outside 60-140 has probability ~1e-8.
    assert 60 <= statuses.count(500) <= 140 and set(statuses) == {200, 500}


def test_slow_queries_slow_down_database_routes(client):
    _set(client, slow_queries=True, slow_query_seconds=0.4)
    response, elapsed = _timed(client, "/api/quotes")
    assert response.status_code == 200 and elapsed >= 0.4
    _set(client, slow_queries=False)
    assert _timed(client, "/api/quotes")[1] < 0.4


def test_cache_flush_removes_only_the_demos_keys(client, demo_settings):
    store = redis.Redis.from_url(demo_settings.redis_url)
    store.set("someone-else:key", "keep me")
    client.get("/api/quotes/AAPL")
    assert client.get("/api/quotes/AAPL").json()["cached"] is True
    result = _set(client, cache_flush=True)
    assert result["actions"]["cache_flush"]["keys_removed"] >= 1
    assert client.get("/api/quotes/AAPL").json()["cached"] is False
    assert store.get("someone-else:key") == b"keep me"
    assert result["faults"] == DEFAULTS, "cache_flush is an action, not a switch"


def test_market_data_stall_stops_ticks_and_grows_freshness(client, demo):
    wait_until(lambda: demo.simulator.ticks >= 2, 5, what="simulator ticking")
    _set(client, market_data_stall=True)
    before = demo.simulator.ticks
    time.sleep(0.3)  # the fault's duration (6 tick intervals): what the stall does over time is the test
    ticks = demo.simulator.ticks
    assert ticks <= before + 1, "at most the tick in flight when the switch flipped"
    # No tick for 10 more tick intervals (a quiet period, checked all along).
    holds_for(lambda: demo.simulator.ticks == ticks, 0.5, "no tick while stalled", interval=0.05)
    assert demo.simulator.freshness() >= 0.5
    with client.websocket_connect("/ws/quotes") as ws:
        ws.receive_json()
        ws.send_bytes(b"ping")
        assert ws.receive_bytes() == b"pong", "no tick may arrive before the pong while stalled"
    health = client.get("/health").json()
    assert health["components"]["market_data"] is False
    assert health["dependencies"]["market_data_feed"] is False
    _set(client, market_data_stall=False)
    wait_until(lambda: demo.simulator.ticks > ticks, 5, what="ticks resume")
    assert wait_until(lambda: client.get("/health").json()["components"]["market_data"], 5)


def test_dependency_down_redis_gives_503_on_cache_routes(client):
    _set(client, dependency_down="redis")
    response = client.get("/api/quotes/AAPL")
    assert response.status_code == 503 and response.json()["dependency"] == "redis"
    assert client.post("/api/sessions", json={"user_id": "u", "password": "p"}).status_code == 503
    assert client.get("/api/quotes").status_code == 200, "routes without the cache still serve"
    health = client.get("/health").json()
    assert health["components"]["cache"] is False and health["dependencies"]["redis"] is False
    assert health["status"] == "degraded"
    _set(client, dependency_down=None)
    assert client.get("/api/quotes/AAPL").status_code == 200


def test_dependency_down_database_gives_503_on_database_routes(client):
    _set(client, dependency_down="database")
    for method, path, body in (("GET", "/api/quotes", None), ("GET", "/api/portfolio/u1", None),
                               ("POST", "/api/orders", {"user_id": "u", "symbol": "AAPL", "side": "buy",
                                                        "type": "market", "quantity": 1})):
        response = client.request(method, path, json=body)
        assert response.status_code == 503, path
        assert response.json()["dependency"] == "database"
    health = client.get("/health").json()
    assert health["components"]["database"] is False and health["dependencies"]["sqlite"] is False
    _set(client, dependency_down=None)
    assert client.get("/api/quotes").status_code == 200


def test_cache_errors_is_a_sustained_redis_command_error_fault(client, demo):
    if demo.cache.name != "redis":
        pytest.skip("needs the real Redis")
    calls = []
    provoke = demo.cache.backend.provoke_error
    demo.cache.backend.provoke_error = lambda key: calls.append(provoke(key)) or calls[-1]
    _set(client, cache_errors=True)
    for _ in range(3):
        assert client.get("/api/quotes/AAPL").status_code in (200, 404), "the request still answers"
    assert len(calls) == 3 and all(c.startswith("ResponseError") for c in calls), calls
    _set(client, cache_errors=False)
    client.get("/api/quotes/AAPL")
    assert len(calls) == 3, "off means off"


def test_switches_are_shared_by_every_worker_through_the_file(tmp_path):
    from mystocks_otel_dev.demo.faults import Faults

    path = tmp_path / "faults.json"
    worker_1, worker_2 = Faults(path), Faults(path)
    assert worker_2.state.latency_ms == 0
    worker_1.update({"latency_ms": 250, "dependency_down": "redis"})
    assert worker_2.state.latency_ms == 250 and worker_2.state.dependency_down == "redis"
    worker_2.update({"error_rate": 0.5})  # read-modify-write keeps worker 1's switches
    assert worker_1.state.as_dict() == {**DEFAULTS, "latency_ms": 250, "dependency_down": "redis",
                                        "error_rate": 0.5}
    assert Faults(path).state.error_rate == 0.5, "a worker started later sees the switches"
    worker_2.reset()
    assert worker_1.state.as_dict() == DEFAULTS
    path.write_text("{torn")
    assert worker_1.state.as_dict() == DEFAULTS, "a torn file keeps the last good state"


def test_error_actions_provoke_real_errors(client):
    result = _set(client, db_error=True, cache_error=True)["actions"]
    assert result["db_error"].startswith("OperationalError") and "no such table" in result["db_error"]
    assert result["cache_error"].startswith("ResponseError")
    assert _set(client, bad_measurements=True)["actions"]["bad_measurements"]["sent"] == 3, "recorders never raise"
    assert client.get("/api/quotes").status_code == 200, "the app carries on"


def test_the_fault_body_is_described_in_the_schema_and_the_docstring():
    from dataclasses import fields

    from fastapi import FastAPI

    from mystocks_otel_dev.demo import faults
    from mystocks_otel_dev.demo.routes import admin

    app = FastAPI()
    app.include_router(admin.router)
    post = app.openapi()["paths"]["/admin/faults"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    every_field = {f.name for f in fields(faults.FaultState)} | set(faults.ACTIONS)
    assert set(schema["properties"]) == every_field
    assert all(f"``{name}``" in post["description"] for name in every_field), post["description"]
    # the documented example is a body the switches accept
    state, actions = faults.Faults().update(schema["example"])
    assert state.latency_ms == 200 and state.dependency_down == "redis" and actions == ["cache_flush"]
