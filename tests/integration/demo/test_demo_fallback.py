"""No Redis reachable: the demo still serves, from a bounded in-process cache, and says so once."""

from __future__ import annotations

import logging
import time

from fastapi.testclient import TestClient

from mystocks_otel_dev.demo.app import create_app
from mystocks_otel_dev.demo.cache import MemoryCache
from mystocks_otel_dev.demo.settings import DemoSettings
from support import free_port, wait_until


def test_closed_redis_port_falls_back_to_memory(tmp_path, caplog):
    settings = DemoSettings(database_url=f"sqlite:///{tmp_path / 'demo.db'}",
                            redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            tick_seconds=0.05, health_seconds=0.2)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mystocks_otel_dev.demo"):
        with TestClient(create_app(instrument=False, settings=settings)) as client:
            assert time.monotonic() - started < 5, "the Redis connect timeout is short"
            assert client.get("/api/quotes/AAPL").json()["cached"] is False
            assert client.get("/api/quotes/AAPL").json()["cached"] is True
            login = client.post("/api/sessions", json={"user_id": "u", "password": "p"})
            assert login.status_code == 201
            assert client.delete(f"/api/sessions/{login.json()['session_id']}").status_code == 200
            health = client.get("/health").json()
            for _ in range(3):
                client.get("/health")
    assert health["cache"] == "memory"
    assert health["components"]["cache"] is True, "the memory cache works"
    assert health["dependencies"]["redis"] is False, "but Redis, the dependency, is down"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "mystocks_otel_dev.demo"]
    assert len(warnings) == 1 and 'cache="memory"' in warnings[0].getMessage()


def test_memory_cache_is_a_bounded_lru_with_expiry():
    cache = MemoryCache(max_keys=3)
    for key in "abc":
        cache.set(key, key.upper(), ttl=60)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.set("d", "D", ttl=60)  # evicts b, the least recently used
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    assert cache.stats()["keys"] == 3
    cache.set("e", "E", ttl=0)  # evicts a; expires at once
    wait_until(lambda: cache.get("e") is None, 2, "the expired key gone")
    assert cache.get("a") is None
    assert cache.flush("") == 2 and cache.stats()["keys"] == 0
