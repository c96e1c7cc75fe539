"""Entry points for ``opentelemetry-instrument``: zero-code instrumentation.

``opentelemetry-instrument uvicorn app:app`` loads :class:`MyStocksDistro`, then
:class:`MyStocksConfigurator`, then the installed instrumentors. The configurator
validates the settings (exiting non-zero on a bad one, because the launcher would
otherwise swallow the error and run uninstrumented), installs the SQLAlchemy and
Redis hooks, and makes every FastAPI app the process creates call
``setup_telemetry`` on itself. The provider therefore starts in the process that
creates the app: never in uvicorn's ``--reload`` parent, which binds nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

from . import config, runtime

_log = logging.getLogger(__name__)

# Upstream instrumentors whose metrics our own layers replace. With tracing on,
# the runtime runs them for spans only (no-op meter provider).
_REPLACED = frozenset({"fastapi", "asgi", "starlette", "sqlalchemy", "redis"})


class MyStocksDistro(BaseDistro):
    def _configure(self, **kwargs):
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "prometheus")
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")

    def load_instrumentor(self, entry_point, **kwargs):
        if entry_point.name in _REPLACED:
            _log.debug("mystocks-otel replaces the %s instrumentation", entry_point.name)
            return
        super().load_instrumentor(entry_point, **kwargs)


class MyStocksConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs):
        try:
            settings = config.load()
        except config.ConfigError as error:
            fail_startup(error)
            return
        if settings.sdk_disabled:
            return
        runtime.install_library_hooks()
        patch_fastapi()


def fail_startup(error: Exception) -> None:
    """Stop the process with one line: the launcher logs and swallows exceptions."""
    sys.stderr.write(f"mystocks-otel: configuration error: {error}\n")
    sys.stderr.flush()
    os._exit(2)  # SystemExit would be caught by the launcher's caller in some versions


def patch_fastapi() -> bool:
    """Make every FastAPI app set itself up on creation (subclasses included)."""
    try:
        import fastapi
    except ImportError:
        return False
    original = fastapi.FastAPI.__init__
    if getattr(original, "_mystocks_patched", False):
        return True

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        from .telemetry import setup_telemetry

        try:
            setup_telemetry(self)
        except config.ConfigError as error:
            fail_startup(error)
        except Exception:  # noqa: BLE001 - never stop the host app for telemetry
            _log.exception("mystocks-otel could not instrument %r", self)

    __init__._mystocks_patched = True
    fastapi.FastAPI.__init__ = __init__
    return True
