"""The process-wide telemetry runtime: provider, instrumentors, system sampler and poller.

Started once per process, by ``setup_telemetry`` or by the distro's app set-up; every further
app set up in the same process shares it (the one Runtime lives in :mod:`.state`). The
instrumentors are our contrib-style ones (:mod:`mystocks_otel.integrations`): the runtime
instruments those the settings leave enabled (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``) and
whose library is installed, unless the distro already did at interpreter start.

``fork()`` is handled by the one hook in :mod:`.state`: it pauses the poller (bounded) around
the fork, and restarts it in the child (:meth:`Runtime.restart_poller`).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

from .. import integrations
from ..config import Settings
from . import provider, state
from .health import probe_engines, probe_redis
from .state import HEALTH, INSTRUMENTS, SYSTEM

_log = logging.getLogger(__name__)

APP_WINS_FOR_PROBES = 3  # an app's health report beats the pings for this many intervals


# -- the instrumentors -------------------------------------------------------------------------
def instrumentor(name: str):
    """Our instrumentor of entry point ``name`` (fastapi, sqlalchemy, redis)."""
    return integrations.load(name)


def supported(instrumentor_) -> bool:
    """Whether the library it instruments is installed, in a version it supports."""
    conflict = get_dependency_conflicts(instrumentor_.instrumentation_dependencies())
    if conflict is None:
        return True
    if getattr(conflict, "found", None):
        _log.warning("mystocks-otel: %s", conflict)
    else:
        _log.debug("mystocks-otel: %s", conflict)
    return False


def instrument(name: str, settings: Settings) -> bool:
    """Instrument ``name`` with ``settings`` unless disabled, missing, or done already.
    Returns whether it is instrumented now."""
    found = instrumentor(name)
    if found.is_instrumented_by_opentelemetry:
        return True
    if not settings.instrumentation_enabled(name) or not supported(found):
        return False
    try:
        found.instrument(settings=settings, skip_dep_check=True)
    except ImportError as exc:  # installed, but not importable here: the app runs without it
        _log.debug("mystocks-otel: %s not instrumented: %s", name, exc)
        return False
    return True


def instrument_all(settings: Settings) -> list[str]:
    """:func:`instrument` each of ours; returns the names instrumented."""
    return [name for name in integrations.ENTRY_POINTS if instrument(name, settings)]


def uninstrument_all() -> None:
    """Undo every instrumentor of ours (spans included); installed by the distro or a set-up."""
    for name in reversed(tuple(integrations.ENTRY_POINTS)):
        found = instrumentor(name)
        if found.is_instrumented_by_opentelemetry:
            found.uninstrument()


def instrumented(name: str):
    """Our instrumentor of ``name`` when it is instrumented, else None."""
    found = instrumentor(name)
    return found if found.is_instrumented_by_opentelemetry else None


# -- the poller --------------------------------------------------------------------------------
@contextmanager
def probing() -> Iterator[None]:
    """Run the block as a probe: our SQLAlchemy and Redis hooks record nothing inside it, and
    upstream instrumentations (the Redis spans) are suppressed. The probes' own results go to
    the health metrics only."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    token = state.PROBING.set(True)
    try:
        with suppress_instrumentation():
            yield
    finally:
        state.PROBING.reset(token)


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
                with probing():  # a probe's SELECT 1, PING or INFO is not the app's traffic
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

    @property
    def alive(self) -> bool:
        """False when the thread died (or never started): ``/metrics/health`` is then degraded."""
        return self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._busy:
                    self.run_once()
                self._stop.wait(self.interval)
        except BaseException:  # noqa: BLE001 - said once; health turns degraded (Runtime.poller_state)
            _log.error("mystocks-otel: the probe poller thread died; system, pool and health "
                       "gauges stop updating", exc_info=True)
            raise


# -- the runtime -------------------------------------------------------------------------------
class Runtime:
    #: Set by :mod:`mystocks_otel.testing` on the runtime of a set-up made before a capture (an
    #: app module imported at the top of a test file), which the capture resumes on its own
    #: provider. Such a runtime is not "current" for a new set-up: the first ``setup_telemetry``
    #: made inside the capture replaces it (:func:`start`), with its own settings, as the first
    #: set-up of a fresh interpreter would be. The hooks stay on the library classes, so the
    #: earlier app goes on being measured.
    adopted = False

    def __init__(self, settings: Settings, tracer_provider=None):
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.health = HEALTH
        self.poller: Poller | None = None
        self.state: provider.ProviderState | None = None

    def start(self, engines=()) -> "Runtime":
        self.state = provider.start(self.settings)
        if self.state.multiprocess is None:  # a provider made before (a capture's): our buckets
            INSTRUMENTS.histogram("http.server.request.duration").set_buckets(self.settings.http_buckets)
        instrument_all(self.settings)
        self.add_engines(engines)
        if self.tracing:
            for name in ("sqlalchemy", "redis"):  # HTTP spans are per app (telemetry.py)
                found = instrumented(name)
                if found is not None:
                    found.trace(self.tracer_provider)
            from .sampling import gate_for

            # latency histograms link to the current span, once its trace is kept (tail sampling)
            INSTRUMENTS.enable_exemplars(gate=gate_for(self.tracer_provider))
        self.poller = Poller(self.settings.probe_interval_seconds, self.tasks()).start()
        return self

    def add_engines(self, engines) -> None:
        found = instrumented("sqlalchemy")
        if found is not None and engines:
            found.add_engines(engines)

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def tasks(self) -> list[Callable[[], object]]:
        """What the poller runs: system gauges (if on), pool status, Redis INFO, health probes."""
        # the app's observable instruments too: other workers' scrapes see them (multiprocess)
        tasks = [update_pool_metrics, update_cache_metrics, self.probe_health,
                 observe_app_instruments]
        return [SYSTEM.sample, *tasks] if self.settings.system_metrics else tasks

    def probe_health(self) -> dict:
        sqlalchemy, redis = instrumented("sqlalchemy"), instrumented("redis")
        engines = sqlalchemy.engines if sqlalchemy is not None else []
        clients = redis.clients if redis is not None else []
        dependencies = {**probe_engines(engines, INSTRUMENTS), **probe_redis(clients, INSTRUMENTS)}
        current = state.provider()  # the exporter is healthy unless a push reader keeps failing
        components = {"exporter": not (current is not None
                                       and state.EXPORT_STATUSES.failing(current.readers))}
        databases = [up for name, up in dependencies.items() if name != "redis"]
        if databases:
            components["database"] = all(databases)
        if "redis" in dependencies:
            components["cache"] = dependencies["redis"]
        window = APP_WINS_FOR_PROBES * self.settings.probe_interval_seconds
        return self.health.probed(components, dependencies, app_wins_for=window)

    def poller_state(self) -> str:
        """``running``, ``stopped`` or ``dead`` (the thread ended without being stopped)."""
        poller = self.poller
        if poller is None or poller.stopped:
            return "stopped"
        return "running" if poller.alive else "dead"

    def restart_poller(self) -> None:
        """A new poller thread with the same tasks (after ``fork()``, the old one is gone)."""
        if self.poller is not None:
            self.poller = Poller(self.poller.interval, self.poller.tasks).start()

    def shutdown(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        uninstrument_all()  # spans with them
        INSTRUMENTS.enable_exemplars(False)
        provider.shutdown()


def update_pool_metrics() -> dict:
    found = instrumented("sqlalchemy")
    return found.update_pool_metrics() if found is not None else {}


def observe_app_instruments() -> None:
    """The app's observable instruments' callbacks, into their recorders (app_metrics)."""
    state.APP_INSTRUMENTS.observe_all()


def update_cache_metrics() -> dict:
    found = instrumented("redis")
    return found.update_cache_metrics() if found is not None else {}


def current() -> Runtime | None:
    """The runtime of the set-ups made so far; None before the first (an adopted one does not count)."""
    found = state.runtime()
    return None if found is not None and found.adopted else found


def start(settings: Settings, engines=(), tracer_provider=None) -> Runtime:
    """The process's runtime, started on first call; later calls add engines only.
    An adopted runtime (see :attr:`Runtime.adopted`) is replaced instead."""
    found = state.runtime()
    if found is not None and found.adopted:
        retire(found)
    runtime, created = state.start_runtime(lambda: Runtime(settings, tracer_provider).start(engines))
    if not created:
        runtime.add_engines(engines)
    return runtime


def retire(found: Runtime) -> None:
    """Stop an adopted runtime and undo its instrumentors, leaving the provider running."""
    if state.runtime() is found:
        state.take_runtime()
    if found.poller is not None:
        found.poller.stop()
    uninstrument_all()
    INSTRUMENTS.enable_exemplars(False)


def stop() -> None:
    """Stop the runtime: the poller, the instrumentors and the provider (bounded)."""
    runtime = state.take_runtime()
    state.forget_settings()  # the next set-up is a first one again
    if runtime is not None:
        runtime.shutdown()
        shutdown_tracing(runtime.tracer_provider)
    else:
        uninstrument_all()  # instrumented by the distro, but no app was ever set up
    logs = state.take_logs()
    if logs is not None:
        logs.shutdown()  # bounded


def shutdown_tracing(tracer_provider, seconds: float = 3.0) -> None:
    """Flush and stop a tracer provider we built (never the app's own), waiting at most
    ``seconds``: a dead Collector must not hold the host's shutdown."""
    from .sampling import SAMPLERS

    if tracer_provider is None or tracer_provider not in SAMPLERS:
        return
    worker = threading.Thread(target=tracer_provider.shutdown, name="mystocks-otel-traces", daemon=True)
    worker.start()
    worker.join(seconds)
