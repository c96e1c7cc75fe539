"""Component health and dependency availability, fed by probes and by the app.

The probes ping every SQLAlchemy engine and redis-py client the instrumentors have
seen; the runtime's poller runs them. A value the application reports itself (through
``update_health_metrics``) wins over the probe for three probe intervals: the app
knows more than a ping (a market feed that stalled still answers TCP).
"""

from __future__ import annotations

import math
import threading
import time
from time import perf_counter
from typing import Callable

from ..catalog import OTHER, get
from .instruments import Instruments

COMPONENTS = get("mystocks.health.component_status").labels[0].values
DEPENDENCIES = get("mystocks.health.dependency_availability").labels[0].values


class HealthRegistry:
    """The last health of each component and dependency, as the app and the probes report it.

    The app's own report wins: a probe's value for a name is ignored while the app
    reported that name less than ``app_wins_for`` seconds ago (the probe's caller says
    how long; the runtime uses three probe intervals).
    """

    def __init__(self, instruments: Instruments):
        self.instruments = instruments
        self.reset()

    def reset(self) -> None:
        """Forget every report (the testing module's reset)."""
        self._lock = threading.Lock()
        self._app_reported: dict[tuple[str, str], float] = {}  # (kind, name) -> monotonic time
        self.last: dict[str, dict[str, bool]] = {"components": {}, "dependencies": {}}

    def report(self, components=None, dependencies=None) -> dict:
        """The app's own report (``update_health_metrics(components, dependencies)``)."""
        return self._apply(components, dependencies, app_wins_for=None)

    def probed(self, components=None, dependencies=None, *, app_wins_for: float) -> dict:
        """A probe's results; names the app reported recently keep the app's value."""
        return self._apply(components, dependencies, app_wins_for=app_wins_for)

    def _apply(self, components, dependencies, app_wins_for: float | None) -> dict:
        now = time.monotonic()
        for kind, values, metric, known in (
            ("components", components, "mystocks.health.component_status", COMPONENTS),
            ("dependencies", dependencies, "mystocks.health.dependency_availability", DEPENDENCIES),
        ):
            for name, healthy in (values or {}).items():
                name = name if name in known else OTHER  # keeps this state as bounded as the label
                with self._lock:
                    if app_wins_for is None:
                        self._app_reported[(kind, name)] = now
                    elif now - self._app_reported.get((kind, name), -math.inf) < app_wins_for:
                        continue  # the app's own report is fresher than a ping
                    self.last[kind][name] = bool(healthy)
                self.instruments.gauge(metric).set(1.0 if healthy else 0.0, name)
        with self._lock:
            return {kind: dict(values) for kind, values in self.last.items()}


def _timed(instruments: Instruments, component: str, check: Callable[[], object]) -> bool:
    started = perf_counter()
    try:
        check()
        return True
    except Exception:  # noqa: BLE001 - any failure means unhealthy
        return False
    finally:
        instruments.histogram("mystocks.health.check_duration").record(perf_counter() - started, component)


def in_use(engine) -> bool:
    """Whether the app has opened a connection of ``engine`` already.

    The probe never opens a pool's first connection: made from the poller thread at start-up,
    it would be handed to the app before the app's own ``connect`` hooks (search path,
    pragmas) were registered. Pools that keep no connection (NullPool) leave no trace.
    """
    pool = engine.pool
    if not hasattr(pool, "checkedin"):
        return True
    return pool.checkedin() + pool.checkedout() > 0


def probe_engines(engines, instruments: Instruments) -> dict[str, bool]:
    """{dependency: up} for each engine in use, by a ``SELECT 1``."""
    results: dict[str, bool] = {}
    for engine in [e for e in list(engines) if in_use(e)]:
        backend = engine.url.get_backend_name()
        dependency = backend if backend in DEPENDENCIES else "other"

        def ping(engine=engine):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

        results[dependency] = results.get(dependency, True) and _timed(instruments, "database", ping)
    return results


def probe_redis(clients, instruments: Instruments) -> dict[str, bool]:
    up = None
    for client in list(clients):
        if not hasattr(client, "ping") or "asyncio" in type(client).__module__:
            continue  # async clients cannot be pinged from the poller thread
        up = (up is not False) and _timed(instruments, "cache", client.ping)
    return {} if up is None else {"redis": up}
