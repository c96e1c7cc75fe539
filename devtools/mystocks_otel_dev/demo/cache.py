"""The demo's cache: Redis when reachable, else a bounded in-process LRU.

The fallback is decided once, when the app starts: a demo without Redis still serves, labels its
cache metrics ``cache="memory"`` and says so in one warning. Every key starts with the demo's
prefix, so flushing the cache never touches other programs' keys in a shared Redis database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import redis

import mystocks_otel as otel

from .faults import DependencyDown, Faults

log = logging.getLogger("mystocks_otel_dev.demo")

#: Redis errors that mean "unreachable" (503), not "bug" (500).
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class MemoryCache:
    """A thread-safe LRU with per-key expiry, bounded to ``max_keys``."""

    name = "memory"
    client = None

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max = max_keys
        self._data: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[1] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[0]

    def set(self, key: str, value: str, ttl: int) -> None:
        evicted = 0
        with self._lock:
            self._data[key] = (value, time.monotonic() + ttl)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
                evicted += 1
        if evicted:
            otel.record_cache_event("eviction", cache=self.name, count=evicted)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def flush(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for key in doomed:
                del self._data[key]
            return len(doomed)

    def ping(self) -> bool:
        return True

    def stats(self) -> dict:
        """Keys and a rough size (characters of keys and values), standing in for Redis INFO."""
        with self._lock:
            return {"keys": len(self._data),
                    "memory_bytes": sum(len(k) + len(v) for k, (v, _) in self._data.items())}

    def provoke_error(self, key: str) -> str:
        return "none: the memory cache has no command errors to provoke"

    def close(self) -> None:
        with self._lock:
            self._data.clear()


class RedisCache:
    name = "redis"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get(self, key: str) -> str | None:
        return self.client.get(key)

    def set(self, key: str, value: str, ttl: int) -> None:
        self.client.set(key, value, ex=ttl)

    def delete(self, key: str) -> bool:
        return bool(self.client.delete(key))

    def flush(self, prefix: str) -> int:
        # SCAN + DEL of the demo's prefix, never FLUSHDB: REDIS_URL may name a shared database.
        removed, batch = 0, []
        for key in self.client.scan_iter(match=prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += self.client.delete(*batch)
                batch = []
        if batch:
            removed += self.client.delete(*batch)
        return removed

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.exceptions.RedisError:
            return False

    def provoke_error(self, key: str) -> str:
        """A real command error: INCR on a non-integer value raises ResponseError."""
        self.client.set(key, "not-a-number", ex=60)
        try:
            self.client.incr(key)
        except redis.exceptions.ResponseError as exc:
            return f"ResponseError: {exc}"
        return "none"

    def close(self) -> None:
        self.client.close()


def open_backend(url: str, *, connect_timeout: float, socket_timeout: float, max_keys: int):
    """Redis if it answers a PING now, else the memory LRU (with one warning)."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout,
        decode_responses=True,
    )
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        log.warning("Redis not reachable at %s (%s): using an in-process cache of %d keys (cache=\"memory\")",
                    _redact(url), exc, max_keys)
        return MemoryCache(max_keys)
    return RedisCache(client)


def _redact(url: str) -> str:
    # redis://:password@host/0 -> redis://***@host/0: a warning must not log a secret.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class Cache:
    """What the routes use: the backend plus the fault switch and the key prefix."""

    def __init__(self, backend, faults: Faults, prefix: str) -> None:
        self.backend = backend
        self.faults = faults
        self.prefix = prefix

    @property
    def name(self) -> str:
        return self.backend.name

    def _call(self, method: str, *args):
        self.faults.check_dependency("redis")
        try:
            return getattr(self.backend, method)(*args)
        except UNREACHABLE as exc:
            raise DependencyDown("redis", type(exc).__name__) from exc

    def get(self, key: str) -> str | None:
        if self.faults.state.cache_errors:  # the sustained fault: a real failing command first
            self._call("provoke_error", self.prefix + "fault:not-a-number")
        return self._call("get", self.prefix + key)

    def set(self, key: str, value: str, ttl: int) -> None:
        self._call("set", self.prefix + key, value, ttl)

    def delete(self, key: str) -> bool:
        return self._call("delete", self.prefix + key)

    def flush(self) -> int:
        return self._call("flush", self.prefix)

    def provoke_error(self) -> str:
        return self._call("provoke_error", self.prefix + "fault:not-a-number")

    def healthy(self) -> bool:
        return self.faults.state.dependency_down != "redis" and self.backend.ping()

    def close(self) -> None:
        self.backend.close()
