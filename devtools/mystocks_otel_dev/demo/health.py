"""The periodic health probe: real pings, bent by the fault switches, into the health metrics."""

from __future__ import annotations

import asyncio
import logging

import mystocks_otel as otel

from .cache import Cache
from .db import Database
from .market import MarketSimulator

log = logging.getLogger("mystocks_otel_dev.demo")

PROBE_TIMEOUT = 5.0


async def _probe(check, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        return bool(await asyncio.wait_for(asyncio.to_thread(check), timeout))
    except Exception:  # noqa: BLE001 - a probe that fails or hangs means unhealthy
        return False


class HealthMonitor:
    def __init__(self, database: Database, cache: Cache, simulator: MarketSimulator, interval: float) -> None:
        self.database = database
        self.cache = cache
        self.simulator = simulator
        self.interval = interval
        self.last: dict | None = None

    async def check(self) -> dict:
        db_ok, cache_ok = await asyncio.gather(_probe(self.database.healthy), _probe(self.cache.healthy))
        feed_ok = self.simulator.fresh()
        # With the memory fallback the cache works but Redis, the dependency, is still down.
        redis_ok = cache_ok and self.cache.name == "redis"
        components = {"api": True, "websocket": True, "database": db_ok, "cache": cache_ok,
                      "market_data": feed_ok}
        dependencies = {"redis": redis_ok, self.database.dependency: db_ok, "market_data_feed": feed_ok}
        otel.update_health_metrics(components=components, dependencies=dependencies)
        await _probe(self._cache_metrics)
        self.last = {
            "status": "ok" if all(components.values()) else "degraded",
            "components": components,
            "dependencies": dependencies,
            "cache": self.cache.name,
            "market_data_freshness_seconds": round(self.simulator.freshness(), 3),
        }
        return self.last

    def _cache_metrics(self) -> bool:
        backend = self.cache.backend
        if backend.name == "memory":
            # No INFO to read: report the LRU's own size under cache="memory".
            stats = backend.stats()
            otel.record("mystocks.cache.keys", stats["keys"], {"cache": "memory"})
            otel.record("mystocks.cache.memory_usage", stats["memory_bytes"], {"cache": "memory"})
            otel.update_cache_metrics(cache="memory")
        elif self.cache.faults.state.dependency_down != "redis":
            otel.update_cache_metrics(client=backend.client, cache="redis")
        return True

    async def run(self) -> None:
        """Probe until cancelled (the app's lifespan cancels it on shutdown)."""
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - keep probing
                log.exception("health probe failed")
            await asyncio.sleep(self.interval)
