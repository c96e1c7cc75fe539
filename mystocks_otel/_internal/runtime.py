"""The process-wide telemetry runtime: provider, library hooks, system sampler and poller.

Started once per process, by ``setup_telemetry`` or by the distro; every further
app set up in the same process shares it. Objects here are built with their settings:
the SQLAlchemy and Redis hooks by :func:`install_library_hooks`, the poller by
:class:`Runtime`. The health registry and the system sampler take no settings, so they
exist from import on (an app may report health before set-up).

Pre-fork servers (gunicorn ``--preload``): threads do not survive ``fork()``, and a lock
one of them held at the fork stays held in the child for ever. So a fork waits (bounded)
for the poller to be between runs; the child then clears the counts it inherited and
restarts the poller. The SDK gives the child its own ``service.instance.id`` and export
thread, made fork-safe by :mod:`mystocks_otel.prefork`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable

from . import config, export_health, provider
from .catalog import Kind
from .config import Settings
from .instruments import INSTRUMENTS
from .integrations.health import HealthRegistry, probe_engines, probe_redis
from .integrations.redis import RedisInstrumentor
from .integrations.sqlalchemy import SQLAlchemyInstrumentor
from .integrations.system import SystemSampler

_log = logging.getLogger(__name__)

HEALTH = HealthRegistry()  # the app may report health before set-up
SYSTEM = SystemSampler()  # the one sampler: the poller and update_system_metrics share it
APP_WINS_FOR_PROBES = 3  # an app's health report beats the pings for this many intervals


# -- library hooks -----------------------------------------------------------------------------
@dataclass
class LibraryHooks:
    """The SQLAlchemy and Redis hooks. They patch classes, so a process has one pair."""

    sqlalchemy: SQLAlchemyInstrumentor
    redis: RedisInstrumentor

    @classmethod
    def build(cls, settings: Settings) -> "LibraryHooks":
        return cls(SQLAlchemyInstrumentor(slow_query_seconds=settings.slow_query_seconds,
                                          tables=settings.db_tables),
                   RedisInstrumentor())

    def instrument(self) -> None:
        self.sqlalchemy.instrument()
        self.redis.instrument()

    def uninstrument(self) -> None:
        self.redis.uninstrument()
        self.sqlalchemy.uninstrument()


_hooks_lock = threading.Lock()
_hooks: LibraryHooks | None = None


def install_library_hooks(settings: Settings | None = None) -> LibraryHooks:
    """Build and install the process's hooks on the first call; later calls return them.

    The distro calls this at interpreter start, before any app exists, so that work done
    at import time is measured too; the first set-up calls it otherwise. ``settings``
    defaults to the environment's.
    """
    global _hooks
    with _hooks_lock:
        if _hooks is None:
            hooks = LibraryHooks.build(settings if settings is not None else config.load())
            hooks.instrument()
            _hooks = hooks
        return _hooks


def library_hooks() -> LibraryHooks | None:
    """The installed hooks, or None before set-up."""
    return _hooks


def remove_library_hooks() -> None:
    """Uninstall and forget the hooks (the next install builds them from its settings)."""
    global _hooks
    with _hooks_lock:
        hooks, _hooks = _hooks, None
    if hooks is not None:
        hooks.uninstrument()


# -- the poller --------------------------------------------------------------------------------
class Poller:
    """Runs the update tasks every ``interval`` seconds on a daemon thread.

    The tasks take locks (pools, psutil, the recorders). A lock held at a ``fork()`` stays
    held in the child for ever, so a fork waits until the tasks are between runs (:meth:`pause`).
    """

    def __init__(self, interval: float, tasks: list[Callable[[], object]]):
        self.interval = interval
        self.tasks = tasks
        self._stop = threading.Event()
        self._busy = threading.Lock()  # held while the tasks run
        self._thread = threading.Thread(target=self._run, name="mystocks-otel-poller", daemon=True)

    def start(self) -> "Poller":
        self._thread.start()
        return self

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

    def pause(self, timeout: float) -> bool:
        """Wait (bounded) until the tasks are between runs, and hold them there."""
        if threading.current_thread() is self._thread:
            return False
        return self._busy.acquire(timeout=timeout)

    def resume(self) -> None:
        self._busy.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._busy:
                self.run_once()
            self._stop.wait(self.interval)


# -- the runtime -------------------------------------------------------------------------------
class Runtime:
    def __init__(self, settings: Settings, tracer_provider=None):
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.health = HEALTH
        self.hooks: LibraryHooks | None = None
        self.poller: Poller | None = None
        self.state: provider.ProviderState | None = None

    def start(self, engines=()) -> "Runtime":
        self.state = provider.start(self.settings)
        self.hooks = install_library_hooks(self.settings)
        self.hooks.sqlalchemy.instrument(engines)
        if self.tracing:
            _instrument_upstream_for_spans(self.tracer_provider, engines)
            INSTRUMENTS.enable_exemplars()  # latency histograms link to the current span
        self.poller = Poller(self.settings.probe_interval_seconds, self.tasks()).start()
        return self

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def tasks(self) -> list[Callable[[], object]]:
        """What the poller runs: system gauges (if on), pool status, Redis INFO, health probes."""
        tasks = [self.hooks.sqlalchemy.update_pool_metrics, self.hooks.redis.update_cache_metrics,
                 self.probe_health]
        return [SYSTEM.sample, *tasks] if self.settings.system_metrics else tasks

    def probe_health(self) -> dict:
        engines, clients = self.hooks.sqlalchemy.engines, self.hooks.redis.clients
        dependencies = {**probe_engines(engines), **probe_redis(clients)}
        state = provider.current()  # the exporter is healthy unless a push reader keeps failing
        components = {"exporter": not (state is not None and export_health.failing(state.readers))}
        databases = [up for name, up in dependencies.items() if name != "redis"]
        if databases:
            components["database"] = all(databases)
        if "redis" in dependencies:
            components["cache"] = dependencies["redis"]
        window = APP_WINS_FOR_PROBES * self.settings.probe_interval_seconds
        return self.health.probed(components, dependencies, app_wins_for=window)

    def restart_poller(self) -> None:
        """A new poller thread with the same tasks (after ``fork()``, the old one is gone)."""
        if self.poller is not None:
            self.poller = Poller(self.poller.interval, self.poller.tasks).start()

    def shutdown(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        if self.tracing:
            _uninstrument_upstream_for_spans()  # the pair of start()'s _instrument_upstream_for_spans
        remove_library_hooks()
        INSTRUMENTS.enable_exemplars(False)
        provider.shutdown()


def _instrument_upstream_for_spans(tracer_provider, engines) -> None:
    """Spans beside our metrics. SQL spans come from our own engine hooks (upstream's
    SQLAlchemy instrumentor refuses SQLAlchemy 2.1); Redis spans from upstream's
    instrumentor, whose metrics go to a no-op provider so no series is duplicated."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor as UpstreamRedis
    from opentelemetry.metrics import NoOpMeterProvider

    hooks = library_hooks()
    if hooks is not None:
        hooks.sqlalchemy.trace(tracer_provider)
    upstream = UpstreamRedis()
    if not upstream.is_instrumented_by_opentelemetry:
        upstream.instrument(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())


def _uninstrument_upstream_for_spans() -> None:
    """Undo :func:`_instrument_upstream_for_spans` (upstream instrumentors are singletons)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor as UpstreamRedis

    hooks = library_hooks()
    if hooks is not None:
        hooks.sqlalchemy.untrace()
    upstream = UpstreamRedis()
    if upstream.is_instrumented_by_opentelemetry:
        upstream.uninstrument()


_lock = threading.Lock()
_runtime: Runtime | None = None


def current() -> Runtime | None:
    return _runtime


def start(settings: Settings, engines=(), tracer_provider=None) -> Runtime:
    """The process's runtime, started on first call; later calls add engines only."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(settings, tracer_provider).start(engines)
        elif engines:
            _runtime.hooks.sqlalchemy.instrument(engines)
        return _runtime


def stop() -> None:
    """Stop the runtime: the poller, the library hooks and the provider (bounded)."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.shutdown()
    else:
        remove_library_hooks()  # installed by the distro, but no app was ever set up


# -- fork() -----------------------------------------------------------------------------------
FORK_WAIT_SECONDS = 2.0  # longest a fork waits for a running probe (a hung ping must not hang it)
_paused: Poller | None = None


def _before_fork() -> None:
    global _paused
    poller = _runtime.poller if _runtime is not None else None
    if poller is not None and poller.pause(FORK_WAIT_SECONDS):
        _paused = poller
    elif poller is not None:
        _log.warning("mystocks-otel: fork() while a probe still runs after %ss", FORK_WAIT_SECONDS)


def _after_fork_in_parent() -> None:
    global _paused
    if _paused is not None:
        _paused, paused = None, _paused
        paused.resume()


def _forget_parent_counts() -> None:
    """A forked child counts from zero: the parent keeps what it counted before the fork
    (and pushes it under its own ``service.instance.id``). Gauges keep their last value."""
    state = provider.current()
    if state is not None and getattr(state, "multiprocess", None) is not None:
        return  # the multiprocess store does this itself, and moves the child to its own file
    for recorder in INSTRUMENTS:
        recorder._lock = threading.Lock()  # a parent thread may have held it at the fork
        if recorder.spec.kind is not Kind.GAUGE:
            recorder.clear_values()


def _after_fork_in_child() -> None:
    global _lock, _hooks_lock, _paused
    _lock, _hooks_lock = threading.Lock(), threading.Lock()  # a parent thread may have held them
    _paused = None
    _forget_parent_counts()
    if _runtime is not None:
        _runtime.restart_poller()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
