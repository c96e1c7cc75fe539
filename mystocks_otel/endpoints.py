"""``/metrics``, ``/metrics/health`` and ``/metrics/list``, as a FastAPI router.

Mounted by ``setup_telemetry``; usable alone with ``app.include_router(metrics_router())``.
None of the routes appears in the OpenAPI schema.
"""


import hmac
import time

from . import catalog, exposition, provider, runtime


def health_report() -> dict:
    state, rt = provider.current(), runtime.current()
    if state is None:
        return {"status": "not_configured", "readers": [], "last_collection": None,
                "components": {}, "dependencies": {}}
    health = rt.health.last if rt is not None else {"components": {}, "dependencies": {}}
    unhealthy = [name for name, up in health["components"].items() if not up]
    return {
        "status": "degraded" if unhealthy else "ok",
        "service": state.settings.service_name,
        "readers": sorted(state.readers),
        "uptime_seconds": round(time.time() - state.started_at, 3),
        "last_collection": state.last_collection or None,
        "components": health["components"],
        "dependencies": health["dependencies"],
        "tracing": bool(rt and rt.tracing),
    }


def catalog_listing() -> dict:
    return {"count": len(catalog.METRICS), "metrics": [spec.as_dict() for spec in catalog.METRICS]}


def _authorized(header: str | None, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def metrics_router(token: str | None = None):
    """The three endpoints. ``token`` defaults to MYSTOCKS_OTEL_METRICS_TOKEN (via set-up)."""
    from fastapi import APIRouter, Request, Response
    from fastapi.responses import JSONResponse

    router = APIRouter(include_in_schema=False)

    def _token() -> str | None:
        if token is not None:
            return token
        state = provider.current()
        return state.settings.metrics_token if state is not None else None

    @router.get("/metrics")
    def metrics(request: Request):
        if not _authorized(request.headers.get("authorization"), _token()):
            return Response("unauthorized\n", status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        rendered = exposition.render(request.headers.get("accept"))
        if rendered is None:
            return Response("prometheus exporter is not enabled (OTEL_METRICS_EXPORTER)\n",
                            status_code=503)
        body, content_type = rendered
        return Response(body, headers={"Content-Type": content_type})

    @router.get("/metrics/health")
    def metrics_health():
        report = health_report()
        return JSONResponse(report, status_code=200 if report["status"] != "not_configured" else 503)

    @router.get("/metrics/list")
    def metrics_list():
        return catalog_listing()

    return router
