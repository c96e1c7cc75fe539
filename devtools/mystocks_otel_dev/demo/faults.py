"""Fault-injection switches: break the demo on purpose, to see the telemetry and alerts react.

The switches live in one :class:`Faults` object per app, read by the routes, the data layer
and the simulator, and set through ``GET/POST/DELETE /admin/faults`` (``routes/admin.py``).
A POST is validated as a whole before anything changes, so a bad request changes nothing.

Under several workers a POST reaches one of them, so the switches must be shared: with
``MYSTOCKS_DEMO_FAULTS_FILE`` set (``mystocks-otel stack`` sets it), the state lives in that
JSON file, written atomically under a file lock and re-read by every worker when it changes.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import os
import random
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from fastapi import HTTPException, Request

_log = logging.getLogger("mystocks_demo.faults")

DEPENDENCIES = ("redis", "database")
MAX_LATENCY_MS = 30_000
MAX_SLOW_QUERY_SECONDS = 30.0
#: One-shot actions a POST may ask for besides the switches (run by routes/admin.py).
ACTIONS = ("cache_flush", "db_error", "cache_error", "bad_measurements")


class FaultValidationError(ValueError):
    """A POST /admin/faults body is invalid; the message says which field and what is allowed."""


class DependencyDown(Exception):
    """A dependency is unreachable, for real or by ``dependency_down``: the request gets 503."""

    def __init__(self, dependency: str, reason: str):
        self.dependency = dependency
        super().__init__(f"{dependency} unavailable: {reason}")


@dataclass(frozen=True)
class FaultState:
    latency_ms: int = 0
    error_rate: float = 0.0
    slow_queries: bool = False
    slow_query_seconds: float = 0.5
    market_data_stall: bool = False
    dependency_down: str | None = None
    #: Every cache read also sends a failing Redis command: a sustained command-error rate.
    cache_errors: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
    # bool is an int subclass: {"latency_ms": true} is a mistake, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultValidationError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    if integer and not float(value).is_integer():
        raise FaultValidationError(f"{name} must be a whole number, got {value!r}")
    if math.isnan(value) or not low <= value <= high:
        raise FaultValidationError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultValidationError(f"{name} must be true or false, got {value!r}")
    return value


def _validate(payload: object, current: FaultState) -> tuple[FaultState, list[str]]:
    if not isinstance(payload, dict):
        raise FaultValidationError("the body must be a JSON object, e.g. {\"latency_ms\": 200}")
    known = set(FaultState.__dataclass_fields__) | set(ACTIONS)
    unknown = sorted(set(payload) - known)
    if unknown:
        raise FaultValidationError(f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
    changes: dict = {}
    if "latency_ms" in payload:
        changes["latency_ms"] = int(_number("latency_ms", payload["latency_ms"], 0, MAX_LATENCY_MS, integer=True))
    if "error_rate" in payload:
        changes["error_rate"] = float(_number("error_rate", payload["error_rate"], 0, 1))
    if "slow_query_seconds" in payload:
        seconds = float(_number("slow_query_seconds", payload["slow_query_seconds"], 0, MAX_SLOW_QUERY_SECONDS))
        if seconds == 0:
            raise FaultValidationError("slow_query_seconds must be above 0 (turn slow_queries off instead)")
        changes["slow_query_seconds"] = seconds
    for name in ("slow_queries", "market_data_stall", "cache_errors"):
        if name in payload:
            changes[name] = _flag(name, payload[name])
    if "dependency_down" in payload:
        value = payload["dependency_down"]
        if value is not None and value not in DEPENDENCIES:
            raise FaultValidationError(f"dependency_down must be one of {', '.join(DEPENDENCIES)} or null, got {value!r}")
        changes["dependency_down"] = value
    actions = [name for name in ACTIONS if name in payload and _flag(name, payload[name])]
    return replace(current, **changes), actions


class Faults:
    """The switches of one app, shared through ``path`` when given. Thread-safe."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()
        self._state = FaultState()
        self._path = Path(path) if path else None
        self._seen: int | None = None  # the file's mtime_ns when last read

    @property
    def state(self) -> FaultState:
        if self._path is not None:
            self._refresh()
        return self._state  # frozen: callers get a consistent snapshot without the lock

    def update(self, payload: object) -> tuple[FaultState, list[str]]:
        """Validate ``payload`` whole, apply it, and return the new state and the actions asked for."""
        with self._lock, self._file_lock():
            if self._path is not None:
                self._refresh(force=True)
            new, actions = _validate(payload, self._state)
            self._store(new)
            return new, actions

    def reset(self) -> FaultState:
        with self._lock, self._file_lock():
            self._store(FaultState())
            return self._state

    def check_dependency(self, dependency: str) -> None:
        if self.state.dependency_down == dependency:
            raise DependencyDown(dependency, "dependency_down fault is set")

    # -- the shared file ------------------------------------------------------------------
    def _file_lock(self):
        if self._path is None:
            return _NO_LOCK
        return _FileLock(self._path.with_name(self._path.name + ".lock"))

    def _refresh(self, force: bool = False) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            self._state, self._seen = FaultState(), None
            return
        if mtime == self._seen and not force:
            return
        try:
            raw = json.loads(self._path.read_text())
            known = {f.name for f in fields(FaultState)}
            self._state = FaultState(**{k: v for k, v in raw.items() if k in known})
            self._seen = mtime
        except (OSError, ValueError, TypeError):
            pass  # a torn or foreign file: keep the last good state

    def _store(self, state: FaultState) -> None:
        self._state = state
        if self._path is None:
            return
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state.as_dict()))
        os.replace(tmp, self._path)
        self._seen = self._path.stat().st_mtime_ns


class _FileLock:
    def __init__(self, path: Path):
        self._path = path

    def __enter__(self):
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class _NoLock:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


_NO_LOCK = _NoLock()


async def inject_api_faults(request: Request) -> None:
    """Router dependency of /api: runs after routing, so the route template is still the label."""
    state = request.app.state.demo.faults.state
    if state.latency_ms:
        await asyncio.sleep(state.latency_ms / 1000)
    if state.error_rate and random.random() < state.error_rate:
        # One ERROR record per failed request, inside its span: with OTEL_LOGS_EXPORTER=otlp the
        # log store holds it with the request's trace id (issue 16: page -> trace -> log line).
        _log.error("injected fault: error_rate: %s %s answered 500", request.method,
                   getattr(request.scope.get("route"), "path", "?"))
        raise HTTPException(status_code=500, detail="injected fault: error_rate")
