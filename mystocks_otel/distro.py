"""Entry points for ``opentelemetry-instrument``: zero-code instrumentation.

``opentelemetry-instrument uvicorn app:app`` loads :class:`MyStocksDistro`, then
:class:`MyStocksConfigurator`, then the installed instrumentors: ours
(:mod:`mystocks_otel.integrations`: entry points ``fastapi``, ``sqlalchemy`` and ``redis``),
and upstream's except those ours replace.

- The distro writes nothing into ``os.environ``: our defaults live in
  :class:`~mystocks_otel.config.Settings`, so FastAPI's own telemetry and child processes
  see exactly the environment the user set.
- The configurator validates the settings once, at start-up. A bad one ends the process
  with one line and exit code 2, because the launcher would otherwise swallow the error
  and run uninstrumented. When the application imports FastAPI (not before: importing it
  early would import pydantic and its plugins ahead of the app), it makes every FastAPI app
  set itself up with the settings checked at start-up. That never ends a running process:
  a failure there is logged once and leaves the app uninstrumented.
- The launcher then loads the ``opentelemetry_instrumentor`` entry points, skipping the names
  in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``. The distro loads ours with the start-up
  settings, and skips ours also by alias (``mystocks_sqlalchemy``...) and when their library
  is missing; it skips upstream's FastAPI, ASGI, Starlette, SQLAlchemy and Redis
  instrumentations, which ours replace. With ``fastapi`` disabled, apps are still set up (the
  metrics endpoints, the database, Redis and business metrics) with no HTTP metrics.

The provider therefore starts in the process that creates the app: never in uvicorn's
``--reload`` parent, which binds nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from . import config, integrations
from ._internal import runtime, state
from ._internal.multiprocess.detection import UnsafeDirectoryError

_log = logging.getLogger(__name__)

# Upstream instrumentors whose metrics our own instrumentors replace. With tracing on, ours
# run upstream's Redis and FastAPI ones for spans only (no-op meter provider).
_REPLACED = frozenset({"fastapi", "asgi", "starlette", "sqlalchemy", "redis"})
_LAUNCHER_LOGGER = "opentelemetry.instrumentation.auto_instrumentation._load"
#: opentelemetry-instrumentation-logging's entry point: set up by us (see load_instrumentor).
_LOGGING = "logging"


class MyStocksDistro(BaseDistro):
    def _configure(self, **kwargs):
        # Deliberately no os.environ defaults (see the module docstring).
        logging.getLogger(_LAUNCHER_LOGGER).addFilter(_ReplacedVersionConflicts())

    def load_instrumentor(self, entry_point, **kwargs):
        if integrations.is_ours(entry_point.value):
            load_own(entry_point.name, state.startup_settings())
            return
        if entry_point.name in _REPLACED:
            _log.debug("mystocks-otel replaces the %s instrumentation", entry_point.name)
            return
        if entry_point.name == _LOGGING:
            # Upstream's would put a handler on the root logger for the global LoggerProvider,
            # which we do not set; ours runs at app set-up with the validated settings
            # (OTEL_PYTHON_LOG_CORRELATION, OTEL_LOGS_EXPORTER, MYSTOCKS_OTEL_LOG_FORMAT), and
            # only when one of them asks (mystocks_otel/_internal/logs.py).
            return
        super().load_instrumentor(entry_point, **kwargs)


class _ReplacedVersionConflicts(logging.Filter):
    """Drops the launcher's version-range error for an instrumentation we replace.

    The launcher checks each instrumentation's supported range before asking the distro
    to load it, and logs an error at every start when the installed library is outside
    it (upstream SQLAlchemy's ``<2.1.0`` on SQLAlchemy 2.1). We never run those
    instrumentations, so their ranges say nothing about this process.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a filter must never break logging
            return True
        return not any(message.startswith(f"{name} only instruments ") for name in _REPLACED)


class MyStocksConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs):
        try:
            settings = config.load()
        except config.ConfigError as error:
            fail_startup(error)
            return
        if settings.sdk_disabled:
            return
        state.set_startup_settings(settings)  # for our instrumentors, loaded next
        patch_fastapi(settings)


def load_own(name: str, settings: config.Settings | None) -> bool:
    """Instrument our entry point ``name`` at interpreter start, unless disabled (by name or
    alias), its library is missing, or the configurator did not run (SDK disabled)."""
    if settings is None:
        _log.debug("mystocks-otel: %s not instrumented: no start-up settings", name)
        return False
    return runtime.instrument(name, settings)


def fail_startup(error: Exception) -> None:
    """Stop the process with one line: the launcher logs and swallows exceptions.

    Only ever called from the configurator, at interpreter start, before the app runs.
    """
    _exit_with_line(f"configuration error: {error}", 2)


def _exit_with_line(message: str, code: int) -> None:
    sys.stderr.write(f"mystocks-otel: {message}\n")
    sys.stderr.flush()
    os._exit(code)  # SystemExit would be caught by the launcher's caller in some versions


def patch_fastapi(settings: config.Settings) -> None:
    """Once the application imports FastAPI, every FastAPI app (subclasses included) sets
    itself up with ``settings`` as it is created."""
    import wrapt

    wrapt.register_post_import_hook(functools.partial(_patch, settings=settings), "fastapi")


def _patch(fastapi_module, settings: config.Settings) -> None:
    original = fastapi_module.FastAPI.__init__
    if getattr(original, "_mystocks_patched", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _instrument(self, settings)

    __init__._mystocks_patched = True
    fastapi_module.FastAPI.__init__ = __init__


#: gunicorn's exit code for a worker that failed to boot: the arbiter stops instead of
#: forking it again, and uvicorn reports a start-up failure with the same code.
BOOT_ERROR = 3


def refuse_to_start(error: Exception) -> None:
    """Stop the server with one line: multiprocess set-up found a directory it cannot trust,
    so serving (or forging) merged values from it is worse than not starting."""
    _exit_with_line(f"refusing to start: {error}", BOOT_ERROR)


def _instrument(app, settings: config.Settings) -> None:
    """``setup_telemetry`` for an app the distro saw created; never raises. It exits only
    when the multiprocess store has no safe directory (:func:`refuse_to_start`)."""
    try:
        from ._internal.telemetry import setup_telemetry

        setup_telemetry(app, settings=settings)
    except UnsafeDirectoryError as error:
        refuse_to_start(error)
    except Exception:  # noqa: BLE001 - never stop the host app for telemetry
        if state.first_failure():
            _log.exception("mystocks-otel could not instrument %r; it runs uninstrumented "
                           "(further failures are not logged)", app)
