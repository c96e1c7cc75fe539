"""Our contrib-style instrumentors, and the names that turn them off.

Each is an ``opentelemetry_instrumentor`` entry point of the ``mystocks-otel`` distribution,
named as the upstream instrumentation it stands in for, so that
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` works as users of the upstream distro expect:

- entry point ``fastapi`` (alias ``mystocks_fastapi``): :class:`.fastapi.MyStocksFastAPIInstrumentor`,
  the HTTP and WebSocket metrics of the ASGI layer (disabled, ``/metrics`` is still served);
- entry point ``sqlalchemy`` (alias ``mystocks_sqlalchemy``):
  :class:`.sqlalchemy.MyStocksSQLAlchemyInstrumentor`, query, slow-query, error and pool metrics;
- entry point ``redis`` (alias ``mystocks_redis``): :class:`.redis.MyStocksRedisInstrumentor`,
  command metrics and the cache gauges from ``INFO``.

``opentelemetry-instrument`` skips an entry point whose name is listed; the distro and
``setup_telemetry`` also honour the aliases (``*`` disables all). Importing this package
imports neither SQLAlchemy, Redis nor FastAPI: each instrumentor declares what it supports
(``instrumentation_dependencies``) and is skipped when that library is missing.
"""

from __future__ import annotations

import importlib

from ..config import INSTRUMENTATION_ALIASES

#: entry-point name -> "module:class", in the order they are instrumented.
ENTRY_POINTS = {
    "fastapi": "mystocks_otel.integrations.fastapi:MyStocksFastAPIInstrumentor",
    "sqlalchemy": "mystocks_otel.integrations.sqlalchemy:MyStocksSQLAlchemyInstrumentor",
    "redis": "mystocks_otel.integrations.redis:MyStocksRedisInstrumentor",
}
#: alias -> entry-point name (config.Settings.disabled_instrumentations holds entry-point names).
ALIASES = INSTRUMENTATION_ALIASES


def load(name: str):
    """The instrumentor (singleton) of entry point ``name``."""
    module, _, attribute = ENTRY_POINTS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)()


def is_ours(entry_point_value: str) -> bool:
    return entry_point_value in ENTRY_POINTS.values()
