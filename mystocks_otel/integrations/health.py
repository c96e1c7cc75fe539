"""Component health and dependency availability, fed by probes and by the app.

The automatic probes ping every SQLAlchemy engine and redis-py client the
instrumentors have seen. A value the application reports itself (through
``update_health_metrics``) wins over the probe for three probe intervals: the app
knows more than a ping (a market feed that stalled still answers TCP).
"""

from __future__ import annotations

import logging
import threading
import time
from time import perf_counter
from typing import Callable

from ..catalog import OTHER, get
from ..instruments import gauge, histogram

_log = logging.getLogger(__name__)
COMPONENTS = get("mystocks.health.component_status").labels[0].values
DEPENDENCIES = get("mystocks.health.dependency_availability").labels[0].values


class HealthRegistry:
    def __init__(self, pin_seconds: float = 45.0):
        self.pin_seconds = pin_seconds
        self._lock = threading.Lock()
        self._pinned: dict[tuple[str, str], float] = {}  # (kind, name) -> until
        self.last: dict[str, dict[str, bool]] = {"components": {}, "dependencies": {}}

    def report(self, components=None, dependencies=None, *, pin: bool = True) -> dict:
        now = time.monotonic()
        for kind, values, metric, known in (
            ("components", components, "mystocks.health.component_status", COMPONENTS),
            ("dependencies", dependencies, "mystocks.health.dependency_availability", DEPENDENCIES),
        ):
            for name, healthy in (values or {}).items():
                name = name if name in known else OTHER  # keeps this state as bounded as the label
                with self._lock:
                    if pin:
                        self._pinned[(kind, name)] = now + self.pin_seconds
                    elif self._pinned.get((kind, name), 0) > now:
                        continue  # the app's own report is fresher than a ping
                    self.last[kind][name] = bool(healthy)
                gauge(metric).set(1.0 if healthy else 0.0, name)
        return {kind: dict(values) for kind, values in self.last.items()}


def _timed(component: str, check: Callable[[], object]) -> bool:
    started = perf_counter()
    try:
        check()
        return True
    except Exception:  # noqa: BLE001 - any failure means unhealthy
        return False
    finally:
        histogram("mystocks.health.check_duration").record(perf_counter() - started, component)


def probe_engines(engines) -> dict[str, bool]:
    """{dependency: up} for each engine, by a ``SELECT 1``."""
    results: dict[str, bool] = {}
    for engine in list(engines):
        backend = engine.url.get_backend_name()
        dependency = backend if backend in DEPENDENCIES else "other"

        def ping(engine=engine):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

        results[dependency] = results.get(dependency, True) and _timed("database", ping)
    return results


def probe_redis(clients) -> dict[str, bool]:
    up = None
    for client in list(clients):
        if not hasattr(client, "ping") or "asyncio" in type(client).__module__:
            continue  # async clients cannot be pinged from the poller thread
        up = (up is not False) and _timed("cache", client.ping)
    return {} if up is None else {"redis": up}


class Poller:
    """Runs the update tasks every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float, tasks: list[Callable[[], object]]):
        self.interval = interval
        self.tasks = tasks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mystocks-otel-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> None:
        for task in self.tasks:
            try:
                task()
            except Exception:  # noqa: BLE001 - one failing probe must not stop the others
                _log.warning("mystocks-otel: %s failed", getattr(task, "__name__", task),
                             exc_info=True)

    def _run(self) -> None:
        self.run_once()
        while not self._stop.wait(self.interval):
            self.run_once()
