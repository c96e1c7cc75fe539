"""The convenience API the specification names: ``record_*`` and ``update_*``.

Every function here is safe to call from request handlers: it never raises (a bad
argument is dropped and counted in ``mystocks_telemetry_dropped_measurements_total``),
and it works before ``setup_telemetry`` (values are kept and exported once set up).
Label values outside a metric's bounded set become ``other``.

``record_api_request``, ``record_websocket_event`` and ``record_db_query`` are manual
fallbacks: they record what the ASGI layer and the SQLAlchemy hook already record by
themselves. Call them only for traffic those layers do not see, never beside them, or
every request or query is counted twice.

These are the package's API (``mystocks_otel.record_*``); nothing below this module imports it.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable, TypeVar

from ..config import Settings
from ..integrations.redis import update_cache_info
from ..integrations.sqlalchemy import update_pool_metrics
from . import runtime
from .instruments import DROPPED
from .state import HEALTH, INSTRUMENTS, SYSTEM, counter, gauge, histogram

_log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)


def _never_raises(metric: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception:  # noqa: BLE001 - telemetry must not hurt the caller
                _log.debug("%s dropped a measurement", fn.__name__, exc_info=True)
                INSTRUMENTS[DROPPED].add(1, metric, "error")
                return None
        return safe  # type: ignore[return-value]
    return decorate


# -- API / WebSocket ---------------------------------------------------------------------
@_never_raises("http.server.request.duration")
def record_api_request(method: str, route: str | None, status_code: int,
                       duration_seconds: float, *, request_body_size: int | None = None,
                       response_body_size: int | None = None) -> None:
    """Manual fallback: one HTTP request, for an app served without the ASGI layer.

    ``route`` is the route template. The body sizes (bytes) are recorded when given. The
    status code is grouped (``2xx``) when the set-up's settings say so. ``setup_telemetry``'s
    ASGI layer already records every request it serves: do not call this beside it, or each
    request is counted twice.
    """
    method, status = method.upper(), int(status_code)
    rt = runtime.current()
    if rt is not None and rt.settings.group_status_codes:
        status = f"{status // 100}xx"
    histogram("http.server.request.duration").record(duration_seconds, method, route, status)
    if request_body_size is not None:
        histogram("http.server.request.body.size").record(request_body_size, method, route, status)
    if response_body_size is not None:
        histogram("http.server.response.body.size").record(response_body_size, method, route, status)


@_never_raises("mystocks.websocket.messages")
def record_websocket_event(event: str, namespace: str, *, direction: str = "sent",
                           message_type: str = "text", duration_seconds: float | None = None,
                           reason: str = "exception") -> None:
    """Manual fallback: one WebSocket event, for sockets the ASGI layer does not serve.

    ``event`` is connect | disconnect | message | error. ``namespace`` is the route template.
    The ASGI layer already records every WebSocket it serves: do not call this beside it.
    """
    if event == "connect":
        counter("mystocks.websocket.connections_opened").add(1, namespace)
        counter("mystocks.websocket.active_connections").add(1, namespace)
    elif event == "disconnect":
        counter("mystocks.websocket.active_connections").add(-1, namespace)
        if duration_seconds is not None:
            histogram("mystocks.websocket.connection_duration").record(duration_seconds, namespace)
    elif event == "message":
        counter("mystocks.websocket.messages").add(1, namespace, direction, message_type)
    elif event == "error":
        counter("mystocks.websocket.connection_errors").add(1, namespace, reason)
    else:
        raise ValueError(f"unknown websocket event {event!r}")


# -- cache -----------------------------------------------------------------------------------
@_never_raises("mystocks.cache.hits")
def record_cache_event(event: str, cache: str = "redis", count: int = 1) -> None:
    """``event`` is hit | miss | eviction. Keeps ``mystocks_cache_hit_ratio`` current."""
    if event == "eviction":
        counter("mystocks.cache.evictions").add(count, cache)
        return
    if event not in ("hit", "miss"):
        raise ValueError(f"unknown cache event {event!r}")
    counter("mystocks.cache.hits" if event == "hit" else "mystocks.cache.misses").add(count, cache)
    _update_hit_ratio(cache)


def _update_hit_ratio(cache: str) -> float | None:
    hits = counter("mystocks.cache.hits").value(cache)
    misses = counter("mystocks.cache.misses").value(cache)
    if hits + misses == 0:
        return None
    ratio = hits / (hits + misses)
    gauge("mystocks.cache.hit_ratio").set(ratio, cache)
    return ratio


@_never_raises("mystocks.cache.memory_usage")
def update_cache_metrics(client=None, cache: str = "redis") -> dict:
    """Hit ratio from counted events; memory, keys and evictions from Redis INFO if given a client."""
    report: dict = {"hit_ratio": _update_hit_ratio(cache)}
    if client is not None:
        report.update(update_cache_info(client, cache))
    return report


# -- database --------------------------------------------------------------------------------
@_never_raises("mystocks.db.query_duration")
def record_db_query(operation: str, duration_seconds: float, table: str | None = None,
                    error: str | None = None) -> None:
    """Manual fallback: one SQL statement run outside SQLAlchemy (a raw DB-API driver).

    ``error`` is the exception class name. The SQLAlchemy hook already records every
    statement an engine runs: do not call this for those, or each one is counted twice.
    """
    operation, table = operation.upper(), table or "other"
    if error is not None:
        counter("mystocks.db.query_errors").add(1, operation, error)
        return
    histogram("mystocks.db.query_duration").record(duration_seconds, operation, table)
    hook = runtime.instrumented("sqlalchemy")  # its threshold: the settings it was given
    slow = hook.slow_query_seconds if hook is not None else Settings.slow_query_seconds
    if duration_seconds >= slow:
        counter("mystocks.db.slow_queries").add(1, operation, table)


@_never_raises("mystocks.db.connections_active")
def update_database_metrics(engines=None) -> dict:
    """Pool status of the given engines (default: every engine seen): {pool: {active, idle, open, max}}."""
    if engines is not None:
        return update_pool_metrics(engines)
    return runtime.update_pool_metrics()  # {} before set-up: no engine has been seen


# -- system and health -----------------------------------------------------------------------
@_never_raises("mystocks.system.cpu_utilization")
def update_system_metrics() -> dict:
    """CPU, memory, disk, uptime and threads through psutil (the poller's sampler); returns them."""
    return SYSTEM.sample()


@_never_raises("mystocks.health.component_status")
def update_health_metrics(components: dict[str, bool] | None = None,
                          dependencies: dict[str, bool] | None = None) -> dict:
    """Report health. With no arguments, run the automatic probes (DB and Redis pings).

    Values you report win over the automatic probes for three probe intervals.
    """
    rt = runtime.current()
    if components is None and dependencies is None:
        return rt.probe_health() if rt is not None else {}
    return HEALTH.report(components, dependencies)


# -- business --------------------------------------------------------------------------------
@_never_raises("mystocks.market_data.points_processed")
def record_market_data(source: str, data_type: str, points: int = 1,
                       duration_seconds: float | None = None) -> None:
    counter("mystocks.market_data.points_processed").add(points, source, data_type)
    if points > 0:  # the producer is alive: MarketDataNotUpdated watches time() - this
        gauge("mystocks.market_data.last_update_timestamp").set(time.time(), source)
    if duration_seconds is not None:
        histogram("mystocks.market_data.processing_duration").record(
            duration_seconds, source, data_type)


@_never_raises("mystocks.market_data.feed_errors")
def record_market_data_error(source: str, reason: str) -> None:
    counter("mystocks.market_data.feed_errors").add(1, source, reason)


@_never_raises("mystocks.market_data.symbols_tracked")
def set_symbols_tracked(source: str, count: int) -> None:
    gauge("mystocks.market_data.symbols_tracked").set(count, source)


@_never_raises("mystocks.trading.orders")
def record_order(side: str, order_type: str, status: str,
                 latency_seconds: float | None = None) -> None:
    counter("mystocks.trading.orders").add(1, side, order_type, status)
    if latency_seconds is not None:
        histogram("mystocks.trading.order_latency").record(latency_seconds, side, order_type)


@_never_raises("mystocks.trading.open_orders")
def set_open_orders(side: str, count: int) -> None:
    counter("mystocks.trading.open_orders").set_total(count, side)


@_never_raises("mystocks.user.active_sessions")
def record_session(platform: str, event: str) -> None:
    """``event`` is start | end."""
    if event == "start":
        counter("mystocks.user.sessions_started").add(1, platform)
        counter("mystocks.user.active_sessions").add(1, platform)
    elif event == "end":
        counter("mystocks.user.active_sessions").add(-1, platform)
    else:
        raise ValueError(f"unknown session event {event!r}")


@_never_raises("mystocks.user.logins")
def record_login(platform: str, success: bool) -> None:
    counter("mystocks.user.logins").add(1, platform, "success" if success else "failure")


@_never_raises("mystocks.user.portfolio_updates")
def record_portfolio_update(operation: str) -> None:
    counter("mystocks.user.portfolio_updates").add(1, operation)


@_never_raises("mystocks.user.watchlist_operations")
def record_watchlist_operation(operation: str) -> None:
    counter("mystocks.user.watchlist_operations").add(1, operation)


@_never_raises("mystocks.data_quality.completeness_ratio")
def record_data_quality(dataset: str, *, completeness: float | None = None,
                        freshness_seconds: float | None = None, anomalies: int = 0,
                        anomaly_kind: str = "outlier") -> None:
    if completeness is not None:
        gauge("mystocks.data_quality.completeness_ratio").set(completeness, dataset)
    if freshness_seconds is not None:
        gauge("mystocks.data_quality.freshness").set(freshness_seconds, dataset)
    if anomalies:
        counter("mystocks.data_quality.anomalies").add(anomalies, dataset, anomaly_kind)


# -- alert lifecycle (driven by the Alertmanager webhook) -------------------------------------
@_never_raises("mystocks.alert.fired")
def record_alert_notification(status: str, severity: str, category: str,
                              duration_seconds: float | None = None) -> None:
    """``status`` is firing | resolved; ``duration_seconds`` is firing-to-resolved time."""
    if status == "firing":
        counter("mystocks.alert.fired").add(1, severity, category)
    elif status == "resolved":
        counter("mystocks.alert.resolved").add(1, severity, category)
        if duration_seconds is not None:
            histogram("mystocks.alert.resolution_duration").record(duration_seconds, severity)
    else:
        raise ValueError(f"unknown alert status {status!r}")


@_never_raises("mystocks.alert.active")
def set_active_alerts(severity: str, count: int) -> None:
    counter("mystocks.alert.active").set_total(count, severity)


# -- generic ---------------------------------------------------------------------------------
@_never_raises("mystocks.telemetry.dropped_measurements")
def record(metric: str, value: float, attributes: dict | None = None) -> None:
    """Record into any catalog metric by OTel name; unknown attribute keys are stripped."""
    recorder = INSTRUMENTS[metric]
    values = recorder.values_from_attributes(attributes)
    kind = recorder.spec.kind.value
    if kind == "histogram":
        recorder.record(value, *values)
    elif kind == "gauge":
        recorder.set(value, *values)
    else:
        recorder.add(value, *values)
