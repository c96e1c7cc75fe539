"""mystocks-otel: OpenTelemetry metrics for the MyStocks FastAPI backend.

One line instruments an app::

    from mystocks_otel import setup_telemetry
    setup_telemetry(app)

or, with no code change, ``opentelemetry-instrument uvicorn app:app`` (the distro).

Public API:

- :func:`setup_telemetry` and its :class:`Telemetry` handle; :class:`ConfigError`.
- :func:`metrics_router`: ``/metrics``, ``/metrics/health``, ``/metrics/list`` alone.
- :func:`alert_webhook_router`: ``POST /alerts/webhook`` for Alertmanager (alert-lifecycle
  metrics); mount it with ``app.include_router(alert_webhook_router(token=...))``.
- The recorders (never raise; see their docstrings, e.g. ``help(mystocks_otel.record_order)``):
  ``record_api_request``, ``record_websocket_event``, ``record_cache_event``,
  ``record_db_query``, ``record_market_data``, ``record_market_data_error``,
  ``record_order``, ``record_session``, ``record_login``, ``record_portfolio_update``,
  ``record_watchlist_operation``, ``record_data_quality``, ``record_alert_notification``,
  ``set_symbols_tracked``, ``set_open_orders``, ``set_active_alerts``, ``record``.
- The updaters: ``update_system_metrics``, ``update_database_metrics``,
  ``update_cache_metrics``, ``update_health_metrics``.
- :data:`METRICS`: the metric catalog (``mystocks_otel.catalog``).

Public modules: ``catalog``, ``config``, ``testing`` (the ``mystocks_metrics`` fixture),
``distro`` (``opentelemetry-instrument``), ``endpoints``, ``alert_webhook``, ``cli`` and
``integrations`` (the contrib-style instrumentors: entry points ``fastapi``, ``sqlalchemy``,
``redis``). Everything else is in ``mystocks_otel._internal``: do not import it.

Importing this package has no side effects and never fails for want of FastAPI,
SQLAlchemy or Redis: those are the host app's.
"""

from .alert_webhook import alert_webhook_router
from .catalog import METRICS, MetricSpec
from .config import ConfigError
from .endpoints import metrics_router
from ._internal.recorders import (
    record,
    record_alert_notification,
    record_api_request,
    record_cache_event,
    record_data_quality,
    record_db_query,
    record_login,
    record_market_data,
    record_market_data_error,
    record_order,
    record_portfolio_update,
    record_session,
    record_watchlist_operation,
    record_websocket_event,
    set_active_alerts,
    set_open_orders,
    set_symbols_tracked,
    update_cache_metrics,
    update_database_metrics,
    update_health_metrics,
    update_system_metrics,
)
from ._internal.telemetry import Telemetry, setup_telemetry

__version__ = "0.1.0"

__all__ = [
    "METRICS", "MetricSpec", "ConfigError", "Telemetry", "setup_telemetry", "metrics_router",
    "alert_webhook_router",
    "record", "record_alert_notification", "record_api_request", "record_cache_event",
    "record_data_quality", "record_db_query", "record_login", "record_market_data",
    "record_market_data_error", "record_order", "record_portfolio_update", "record_session",
    "record_watchlist_operation", "record_websocket_event", "set_active_alerts",
    "set_open_orders", "set_symbols_tracked", "update_cache_metrics", "update_database_metrics",
    "update_health_metrics", "update_system_metrics",
]
