"""FastAPI's own telemetry (``fastapi.telemetry``, FastAPI 0.16x) beside ours: HTTP metrics once.

FastAPI measures ``http.server.request.duration`` and ``http.server.active_requests`` itself
when a MeterProvider is configured for it: one passed as
``FastAPI(telemetry={"meter_provider": ...})``, or the global one (set by the application,
by another SDK such as logfire, or by FastAPI's ``FASTAPI_OTEL_AUTO_CONFIGURE``). Those are
the names, units and buckets our ASGI layer records too.

**When the provider FastAPI would use is ours** (the API's placeholder forwarding to
:class:`.app_meters.AppMeterProvider`, e.g. ``FastAPI(telemetry={"meter_provider":
metrics.get_meter_provider()})`` after set-up), **ours win**: our meters give FastAPI's
``http.server.*`` instruments no-ops (they are catalog names), and our layer records the request.
By default FastAPI sees no configured provider (we forward the placeholder instead of setting
the global, see :func:`.app_meters.install_global`), so its native metrics stay off.

**When FastAPI's native metrics go to another provider for a request, they win**, and our layer records
no HTTP metrics for it: the application chose that provider explicitly, FastAPI's own tests
expect their metrics there, and nothing is counted twice. Everything else stays ours:
WebSocket metrics (FastAPI does not meter WebSockets), the endpoints, the libraries, and
HTTP metrics for every request FastAPI does not measure. To keep HTTP metrics on our side
(``/metrics``, our dashboards and alerts) while another SDK configures a global provider,
create the app with ``FastAPI(telemetry={"metrics": False})``.
"""

from __future__ import annotations


def measures_http(app, scope) -> bool:
    """True when FastAPI's native telemetry records this HTTP request's metrics itself.

    Mirrors FastAPI's own per-request decision: native telemetry is running for the
    request (FastAPI put its request state in the scope: not excluded, not replaced by the
    upstream OpenTelemetry middleware), metrics are on in the app's telemetry settings, and
    a real MeterProvider is there (the app's, else a configured global one).
    """
    if scope.get("fastapi.telemetry") is None or scope.get("type") != "http":
        return False
    settings = getattr(app, "_telemetry", None)
    if not isinstance(settings, dict) or not settings.get("metrics"):
        return False
    from opentelemetry import metrics

    from .app_meters import is_ours

    provider = settings.get("meter_provider")
    if provider is None:
        provider = metrics.get_meter_provider()
        if _deferred(provider):
            return False
    if is_ours(provider):  # FastAPI's http.server.* are no-ops there: ours count the request
        return False
    return not isinstance(provider, metrics.NoOpMeterProvider)


def _deferred(provider) -> bool:
    """The API's placeholder provider, before anyone configured one (FastAPI's own test)."""
    try:
        from fastapi.telemetry._api import _unconfigured
    except ImportError:  # a FastAPI without native telemetry never gets here; be safe
        return type(provider).__name__ == "_ProxyMeterProvider"
    return _unconfigured(provider)
