"""The process's state: every object mystocks-otel keeps once per process, and its one fork hook.

Nothing else in the package keeps a module-level singleton or says ``global``. What lives here:

- the recorders (:data:`INSTRUMENTS`), the health registry (:data:`HEALTH`), the system sampler
  (:data:`SYSTEM`), the exporters' statuses (:data:`EXPORT_STATUSES`) and the exposition's label
  cache (:data:`LABEL_TEXTS`): made at import, since an app may record and report health before
  set-up;
- the slots filled at set-up and emptied at shutdown: the provider, the runtime, the standalone
  metrics server, the settings the distro validated at interpreter start, and the settings of
  the first ``setup_telemetry`` (a later set-up with other settings is told so);
- the **one** ``os.register_at_fork`` hook. Threads do not survive ``fork()``, and a lock one of
  them held at the fork stays held in the child for ever. So a fork waits (bounded) for the
  poller and the OTLP readers (:func:`join_fork`) to be between runs; the child then takes new
  locks, forgets the counts it inherited (its parent keeps and exports them), moves to its own
  multiprocess file, and restarts the poller.

The contrib-style instrumentors (:mod:`mystocks_otel.integrations`) are singletons of their own
(every ``BaseInstrumentor`` is); they keep only what they instrumented.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import uuid
import weakref
from typing import Callable, TypeVar

from .app_metrics import AppInstruments
from .export_health import ExportStatuses
from .health import HealthRegistry
from .instruments import GaugeRecorder, HistogramRecorder, Instruments, SumRecorder
from .system import SystemSampler

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: The process-wide recorders (the MeterProvider is process-wide too).
INSTRUMENTS = Instruments()
#: The app's own OpenTelemetry instruments (made through the API; see app_metrics).
APP_INSTRUMENTS = AppInstruments(INSTRUMENTS)
#: The last health of each component and dependency, as the app and the probes report it.
HEALTH = HealthRegistry(INSTRUMENTS)
#: The one system sampler: the poller and ``update_system_metrics`` share it.
SYSTEM = SystemSampler(INSTRUMENTS)
#: What each push exporter did last (``/metrics/health``).
EXPORT_STATUSES = ExportStatuses()
#: /metrics label texts: metric name -> series key -> text, computed once per series (series
#: are bounded by the cardinality limit, and never forgotten by the recorders either).
LABEL_TEXTS: dict[str, dict[tuple, str]] = {}

#: True while the poller runs its probes (``SELECT 1``, ``PING``, ``INFO``): the SQLAlchemy and
#: Redis hooks then record nothing (no metric, no span), so probes never count as the app's traffic.
PROBING: "contextvars.ContextVar[bool]" = contextvars.ContextVar("mystocks_otel_probing", default=False)

FORK_WAIT_SECONDS = 2.0  # longest a fork waits for a running probe (a hung ping must not hang it)


def counter(name: str) -> SumRecorder:
    return INSTRUMENTS.counter(name)


def gauge(name: str) -> GaugeRecorder:
    return INSTRUMENTS.gauge(name)


def histogram(name: str) -> HistogramRecorder:
    return INSTRUMENTS.histogram(name)


# -- the slots filled at set-up ------------------------------------------------------------------
_lock = threading.RLock()  # re-entrant: starting the runtime starts the provider
_slots: dict[str, object] = {
    "provider": None,          # provider.ProviderState
    "runtime": None,           # runtime.Runtime
    "metrics_server": None,    # standalone.MetricsServer
    "startup_settings": None,  # config.Settings the distro validated at interpreter start
    "first_settings": None,    # the settings of the first setup_telemetry
    "paused": None,            # the poller held across a fork
    "logs": None,              # logs.Pipeline: correlation, OTLP log export, JSON lines
}
_failure_logged = False
_instance_ids: dict[int, str] = {}
_fork_participants: "weakref.WeakSet" = weakref.WeakSet()


def _get(slot: str):
    return _slots[slot]


def _start(slot: str, factory: Callable[[], T]) -> tuple[T, bool]:
    """The slot's object, made by ``factory`` (under the lock) when empty; and whether it was."""
    with _lock:
        value = _slots[slot]
        if value is not None:
            return value, False
        value = factory()
        _slots[slot] = value
        return value, True


def _take(slot: str):
    """Empty the slot; returns what it held."""
    with _lock:
        value, _slots[slot] = _slots[slot], None
    return value


def provider():
    """The process's ProviderState, or None before set-up."""
    return _get("provider")


def start_provider(factory):
    return _start("provider", factory)


def take_provider():
    return _take("provider")


def runtime():
    """The process's Runtime, or None before set-up."""
    return _get("runtime")


def start_runtime(factory):
    return _start("runtime", factory)


def take_runtime():
    return _take("runtime")


def metrics_server():
    return _get("metrics_server")


def start_metrics_server(factory):
    return _start("metrics_server", factory)


def take_metrics_server():
    return _take("metrics_server")


def logs():
    """The log pipeline (:mod:`.logs`), or None when no log feature is on."""
    return _get("logs")


def start_logs(factory):
    return _start("logs", factory)


def take_logs():
    return _take("logs")


def startup_settings():
    """The settings the distro validated at interpreter start (None outside the distro)."""
    return _get("startup_settings")


def set_startup_settings(settings) -> None:
    with _lock:
        _slots["startup_settings"] = settings


def first_settings(settings):
    """The settings of the first ``setup_telemetry`` in this process (since the runtime last
    stopped): ``settings`` when this is the first."""
    return _start("first_settings", lambda: settings)[0]


def forget_settings() -> None:
    _take("first_settings")


def first_failure() -> bool:
    """True the first time it is called in the process (a failure is logged once)."""
    global _failure_logged
    with _lock:
        first, _failure_logged = not _failure_logged, True
    return first


def instance_id() -> str:
    """This process's ``service.instance.id``: one per process, new after ``fork()``."""
    return _instance_ids.setdefault(os.getpid(), str(uuid.uuid4()))


def reset() -> None:
    """Forget the set-up options and the logged failure (the testing module's reset)."""
    global _failure_logged
    with _lock:
        _slots["first_settings"] = None
        _failure_logged = False


# -- fork() ----------------------------------------------------------------------------------------
def join_fork(participant) -> None:
    """Call ``participant.before_fork()`` and ``participant.after_fork_in_parent()`` around every
    ``fork()`` while it lives (held weakly): the OTLP readers, which wait to be between exports."""
    _fork_participants.add(participant)


def _before_fork() -> None:
    runtime_ = _slots["runtime"]
    poller = getattr(runtime_, "poller", None)
    if poller is not None and poller.pause(FORK_WAIT_SECONDS):
        _slots["paused"] = poller
    elif poller is not None:
        _log.warning("mystocks-otel: fork() while a probe still runs after %ss", FORK_WAIT_SECONDS)
    for participant in list(_fork_participants):
        participant.before_fork()


def _after_fork_in_parent() -> None:
    for participant in list(_fork_participants):
        participant.after_fork_in_parent()
    paused, _slots["paused"] = _slots["paused"], None
    if paused is not None:
        paused.resume()


def _after_fork_in_child() -> None:
    """The child counts from zero: the parent keeps what it counted before the fork (and
    exports it under its own ``service.instance.id``). Gauges keep their last value."""
    global _lock
    _lock = threading.RLock()  # a parent thread may have held it at the fork
    _slots["paused"] = None
    EXPORT_STATUSES.after_fork()
    INSTRUMENTS.after_fork()
    APP_INSTRUMENTS.after_fork()
    store = getattr(_slots["provider"], "multiprocess", None)
    if store is not None:
        store.after_fork_in_child()  # its own file and slot, the parent's left alone
    runtime_ = _slots["runtime"]
    if runtime_ is not None:
        runtime_.restart_poller()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
