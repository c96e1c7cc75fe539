"""Every REST route of the demo, against real SQLite and a real (throwaway) Redis."""

from __future__ import annotations

import sys

import redis
from sqlalchemy import create_engine, select

from mystocks_otel_dev.demo.db import SEED, orders, positions, watchlist
from support import free_port


def test_list_quotes_has_the_seed(client):
    response = client.get("/api/quotes")
    assert response.status_code == 200
    symbols = {q["symbol"] for q in response.json()["quotes"]}
    assert set(SEED) <= symbols


def test_quote_is_cache_aside_through_redis(client, demo_settings):
    first = client.get("/api/quotes/aapl")  # symbols are case-insensitive
    second = client.get("/api/quotes/AAPL")
    assert first.status_code == second.status_code == 200
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert second.json()["symbol"] == "AAPL" and second.json()["price"] > 0
    store = redis.Redis.from_url(demo_settings.redis_url, decode_responses=True)
    key = demo_settings.key_prefix + "quote:AAPL"
    assert 0 < store.ttl(key) <= demo_settings.quote_ttl_seconds


def test_unknown_and_malformed_symbols(client, demo_settings):
    assert client.get("/api/quotes/NOPE").status_code == 404
    assert client.get("/api/quotes/NOPE").json()["detail"] == "unknown symbol NOPE"
    store = redis.Redis.from_url(demo_settings.redis_url)
    assert store.exists(demo_settings.key_prefix + "quote:NOPE") == 0, "misses must not be cached"
    assert client.get("/api/quotes/" + "A" * 40).status_code == 422
    assert client.get("/api/quotes/AAPL;DROP").status_code == 422


def test_orders_lifecycle_and_persistence(client, demo_settings):
    market = client.get("/api/quotes/MSFT").json()["price"]
    filled = client.post("/api/orders", json={"user_id": "alice", "symbol": "msft", "side": "buy",
                                              "type": "market", "quantity": 2})
    assert filled.status_code == 201
    assert filled.json()["status"] == "filled" and filled.json()["price"] > 0
    resting = client.post("/api/orders", json={"user_id": "alice", "symbol": "MSFT", "side": "buy",
                                               "type": "limit", "quantity": 1, "price": market / 10})
    assert resting.status_code == 201 and resting.json()["status"] == "accepted"
    order_id = resting.json()["id"]

    fetched = client.get(f"/api/orders/{order_id}")
    assert fetched.status_code == 200
    assert fetched.json()["user_id"] == "alice" and fetched.json()["status"] == "accepted"
    cancelled = client.delete(f"/api/orders/{order_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/api/orders/{order_id}").status_code == 409
    assert client.get("/api/orders/999999").status_code == 404

    engine = create_engine(demo_settings.database_url)
    with engine.connect() as conn:
        stored = {row.id: row.status for row in conn.execute(select(orders))}
    engine.dispose()
    assert stored == {filled.json()["id"]: "filled", order_id: "cancelled"}


def test_bad_orders_are_rejected_with_a_reason(client):
    base = {"user_id": "bob", "symbol": "AAPL", "side": "buy", "type": "market", "quantity": 1}
    cases = [
        ({"side": "hold"}, 422, "side must be one of buy, sell"),
        ({"type": "iceberg"}, 422, "type must be one of"),
        ({"quantity": 0}, 422, "quantity must be above 0"),
        ({"type": "limit"}, 422, "needs a price"),
        ({"symbol": "NOPE"}, 404, "unknown symbol NOPE"),
    ]
    for change, status, reason in cases:
        response = client.post("/api/orders", json={**base, **change})
        assert response.status_code == status, change
        assert reason in response.json()["detail"], change
    assert client.post("/api/orders", json={**base, "user_id": "bad id!"}).status_code == 422


def test_portfolio_add_update_remove(client, demo_settings):
    add = client.post("/api/portfolio/carol/positions", json={"symbol": "TSLA", "quantity": 10, "price": 100})
    assert add.status_code == 200 and add.json()["operation"] == "add"
    update = client.post("/api/portfolio/carol/positions", json={"symbol": "TSLA", "quantity": 4, "price": 100})
    assert update.json()["operation"] == "update"
    portfolio = client.get("/api/portfolio/carol").json()
    [held] = portfolio["positions"]
    assert held["symbol"] == "TSLA" and held["quantity"] == 4
    assert held["market_value"] == round(4 * held["price"], 2) == portfolio["market_value"]
    remove = client.post("/api/portfolio/carol/positions", json={"symbol": "TSLA", "quantity": 0})
    assert remove.json()["operation"] == "remove"
    assert client.post("/api/portfolio/carol/positions", json={"symbol": "TSLA", "quantity": 0}).status_code == 404
    assert client.post("/api/portfolio/carol/positions", json={"symbol": "NOPE", "quantity": 1}).status_code == 404
    assert client.post("/api/portfolio/carol/positions", json={"symbol": "TSLA", "quantity": -1}).status_code == 422
    assert client.get("/api/portfolio/carol").json()["positions"] == []
    engine = create_engine(demo_settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(positions)).all() == []
    engine.dispose()


def test_watchlist_get_post_delete(client, demo_settings):
    assert client.get("/api/watchlist/dave").json() == {"user_id": "dave", "symbols": []}
    assert client.post("/api/watchlist/dave", json={"symbol": "nvda"}).status_code == 201
    again = client.post("/api/watchlist/dave", json={"symbol": "NVDA"})
    assert again.status_code == 201 and again.json()["added"] is False
    client.post("/api/watchlist/dave", json={"symbol": "AAPL"})
    assert client.get("/api/watchlist/dave").json()["symbols"] == ["AAPL", "NVDA"]
    assert client.delete("/api/watchlist/dave", params={"symbol": "NVDA"}).status_code == 200
    assert client.delete("/api/watchlist/dave", params={"symbol": "NVDA"}).status_code == 404
    assert client.post("/api/watchlist/dave", json={"symbol": "NOPE"}).status_code == 404
    engine = create_engine(demo_settings.database_url)
    with engine.connect() as conn:
        assert [r.symbol for r in conn.execute(select(watchlist))] == ["AAPL"]
    engine.dispose()


def test_sessions_login_logout(client, demo_settings):
    assert client.post("/api/sessions", json={"user_id": "erin", "password": "wrong"}).status_code == 401
    login = client.post("/api/sessions", json={"user_id": "erin", "password": "s3cret", "platform": "ios"})
    assert login.status_code == 201
    session_id = login.json()["session_id"]
    store = redis.Redis.from_url(demo_settings.redis_url)
    assert store.exists(demo_settings.key_prefix + f"session:{session_id}") == 1
    logout = client.delete(f"/api/sessions/{session_id}")
    assert logout.status_code == 200 and logout.json()["ended"] is True
    assert client.delete(f"/api/sessions/{session_id}").status_code == 404, "a session ends once"
    assert store.exists(demo_settings.key_prefix + f"session:{session_id}") == 0


def test_health_reports_real_probes(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["cache"] == "redis"
    assert body["dependencies"] == {"redis": True, "sqlite": True, "market_data_feed": True}
    assert all(body["components"].values())


def test_openapi_lists_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/quotes", "/api/quotes/{symbol}", "/api/orders", "/api/orders/{order_id}",
                 "/api/portfolio/{user_id}", "/api/portfolio/{user_id}/positions",
                 "/api/watchlist/{user_id}", "/api/sessions", "/api/sessions/{session_id}",
                 "/health", "/admin/faults"):
        assert path in paths, path


def test_building_and_importing_the_app_touches_no_network(tmp_path, monkeypatch):
    """Import plain.py (which builds an app) with both URLs pointing at nothing: no error, no file.
    In process, on fresh module objects (the originals are put back afterwards)."""
    import importlib

    db_file = tmp_path / "never.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_file}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    names = ("mystocks_otel_dev.demo.plain", "mystocks_otel_dev.demo.server", "mystocks_otel_dev.demo.traffic")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    plain, _, _ = (importlib.import_module(name) for name in names)
    assert type(plain.app).__name__ == "FastAPI"
    assert not db_file.exists()
