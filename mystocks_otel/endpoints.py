"""``/metrics``, ``/metrics/health`` and ``/metrics/list``: what they answer and where they live.

:func:`answer` is the one code path every door takes: the ASGI layer on the app's port
(:mod:`mystocks_otel._internal.asgi`), the standalone port (:mod:`mystocks_otel._internal.standalone`) and
:func:`metrics_router`, for apps that want the endpoints inside their own router and schema.
``/metrics`` needs the bearer token when one is set; health and list stay open for probes.

Where they live: under ``MYSTOCKS_OTEL_METRICS_PATH`` (default ``/metrics``), unless the host
app routes one of the three paths itself. Then the host keeps its route, and ours step aside
together to :data:`ALTERNATIVE_PATH` (or, when the path was set explicitly, leave the app's
port to the host), with one warning. See :func:`choose_prefix`.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class on the
# metrics_router handlers, imported inside metrics_router.
import json
import re
import time
from dataclasses import dataclass

from . import catalog
from ._internal import auth, exposition, state
from .config import DEFAULT_EXCLUDED_URLS, Settings

DEFAULT_PATH = "/metrics"
ALTERNATIVE_PATH = "/_otel/metrics"
SUFFIXES = ("", "/health", "/list")  # /metrics, /metrics/health, /metrics/list
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def health_report() -> dict:
    current, rt = state.provider(), state.runtime()
    if current is None:
        return {"status": "not_configured", "readers": [], "reader_states": {},
                "last_collection": None, "components": {}, "dependencies": {}}
    health = rt.health.last if rt is not None else {"components": {}, "dependencies": {}}
    unhealthy = [name for name, up in health["components"].items() if not up]
    failing = state.EXPORT_STATUSES.failing(current.readers)
    poller = rt.poller_state() if rt is not None else "stopped"
    return {
        "status": "degraded" if unhealthy or failing or poller == "dead" else "ok",
        # the resource's name, as target_info shows it: the app's choice, else OTEL_SERVICE_NAME
        # or OTEL_RESOURCE_ATTRIBUTES, else the SDK's unknown_service:<executable>
        "service": current.resource.attributes.get("service.name"),
        "readers": sorted(current.readers),
        "reader_states": state.EXPORT_STATUSES.reader_states(current.readers, current.last_collection),
        "uptime_seconds": round(time.time() - current.started_at, 3),
        "last_collection": current.last_collection or None,
        "components": health["components"],
        "dependencies": health["dependencies"],
        "tracing": bool(rt and rt.tracing),
        "poller": {"state": poller},  # dead: the probe thread died, the gauges are frozen
    }


def catalog_listing() -> dict:
    return {"count": len(catalog.METRICS), "metrics": [spec.as_dict() for spec in catalog.METRICS]}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, document: dict) -> Reply:
    return Reply(status, json.dumps(document).encode(), _JSON)


def answer(suffix: str, *, method: str = "GET", authorization: str | bytes | None = None,
           accept: str | None = None, token: str | None = None) -> Reply:
    """The reply of ``<prefix><suffix>``; ``suffix`` is one of :data:`SUFFIXES`."""
    if method not in ("GET", "HEAD"):
        return Reply(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
    if suffix == "/health":
        report = health_report()
        return _json(200 if report["status"] != "not_configured" else 503, report)
    if suffix == "/list":
        return _json(200, catalog_listing())
    if not auth.bearer_matches(authorization, token):
        return Reply(401, b"unauthorized\n", headers=(("WWW-Authenticate", auth.challenge("metrics")),))
    rendered = exposition.render(accept)
    if rendered is None:
        return Reply(503, b"prometheus exporter is not enabled (OTEL_METRICS_EXPORTER)\n")
    body, content_type = rendered
    return Reply(200, body, content_type)


def suffix_of(path: str, prefix: str | None) -> str | None:
    """Which endpoint ``path`` names under ``prefix`` ("", "/health", "/list"), or None."""
    if prefix is None or not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    return rest if rest in SUFFIXES else None


def configured_token() -> str | None:
    current = state.provider()
    return current.settings.metrics_token if current is not None else None


# -- where the endpoints live on the app's port ------------------------------------------


def routes_of(app) -> list:
    """The routes of a Starlette/FastAPI app or router (empty for anything else)."""
    router = getattr(app, "router", None)
    return list(getattr(router, "routes", None) or getattr(app, "routes", None) or ())


def _ours(route) -> bool:
    """A route of :func:`metrics_router` the app included itself: not the host's own."""
    target = getattr(route, "original_router", None) or route  # FastAPI's included-router entry
    return getattr(target, "mystocks_metrics_router", False) or getattr(
        getattr(route, "endpoint", None), "mystocks_metrics_endpoint", False)


def route_owner(app, path: str) -> str | None:
    """Who the app's own router would route ``path`` to (any method): "host", "router" (an
    included :func:`metrics_router`) or None.

    A Mount at the root is followed into its routes (a mounted static directory at ``/``
    is not taken as serving ``/metrics``).
    """
    from starlette.routing import Match, Mount

    probe = {"type": "http", "path": path, "root_path": "", "method": "GET", "headers": []}
    for route in routes_of(app):
        if isinstance(route, Mount) and route.path == "":
            owner = route_owner(route.app, path)
            if owner is not None:
                return owner
            continue
        try:
            match, _ = route.matches(probe)
        except Exception:  # noqa: BLE001 - an exotic route type: assume it is not ours to shadow
            continue
        if match is not Match.NONE:
            return "router" if _ours(route) else "host"
    return None


def choose_prefix(app, settings: Settings) -> tuple[str | None, str | None]:
    """``(prefix or None, warning or None)`` for the endpoints on ``app``'s port.

    None: the layer serves nothing on the app's port, because the app includes
    :func:`metrics_router` there itself (no warning), or routes the path itself and the path
    was set explicitly, or the alternative is taken too (a warning).
    """
    configured = settings.metrics_path or DEFAULT_PATH

    def owners(prefix: str) -> set:
        return {route_owner(app, prefix + suffix) for suffix in SUFFIXES} - {None} if app else set()

    found = owners(configured)
    if not found:
        return configured, None
    if found == {"router"}:
        return None, None
    if settings.metrics_path is not None or owners(ALTERNATIVE_PATH):
        return None, (f"mystocks-otel: the app serves {configured} itself and keeps it; our "
                      f"metrics endpoints are not served on the app's port (use "
                      f"OTEL_EXPORTER_PROMETHEUS_PORT or another MYSTOCKS_OTEL_METRICS_PATH)")
    return ALTERNATIVE_PATH, (f"mystocks-otel: the app serves {configured} itself and keeps it; "
                              f"our metrics endpoints moved to {ALTERNATIVE_PATH}, "
                              f"{ALTERNATIVE_PATH}/health and {ALTERNATIVE_PATH}/list")


_DEFAULT_METRICS_PATTERN = r"^/metrics(/|$)"


def excluded_urls(settings: Settings, prefix: str | None) -> str:
    """The paths not measured. The default follows the endpoints when they move."""
    if settings.excluded_urls != DEFAULT_EXCLUDED_URLS:
        return settings.excluded_urls
    ours = f"^{re.escape(prefix)}(/|$)" if prefix else ""
    parts = [ours if p == _DEFAULT_METRICS_PATTERN else p for p in DEFAULT_EXCLUDED_URLS.split(",")]
    return ",".join(p for p in parts if p)


# -- the endpoints as a router, for apps that want them in their own schema ----------------


def metrics_router(token: str | None = None, *, include_in_schema: bool = False):
    """The three endpoints as a FastAPI router, tagged ``metrics``.

    ``setup_telemetry`` does not need it: its ASGI layer serves the endpoints outside the
    app's router. Include it when the endpoints should live in your router (your
    dependencies then apply to them) and, with ``include_in_schema=True``, in your OpenAPI
    schema. ``token`` defaults to MYSTOCKS_OTEL_METRICS_TOKEN.
    """
    from fastapi import APIRouter, Request, Response

    router = APIRouter(include_in_schema=include_in_schema, tags=["metrics"])  # tags: tag-based ids
    router.mystocks_metrics_router = True

    def respond(request: Request, suffix: str) -> Response:
        reply = answer(suffix, method=request.method, accept=request.headers.get("accept"),
                       authorization=auth.authorization(request.scope),
                       token=token if token is not None else configured_token())
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type,
                        headers=dict(reply.headers))

    def metrics(request: Request):
        return respond(request, "")

    def metrics_health(request: Request):
        return respond(request, "/health")

    def metrics_list(request: Request):
        return respond(request, "/list")

    for suffix, endpoint in zip(SUFFIXES, (metrics, metrics_health, metrics_list)):
        endpoint.mystocks_metrics_endpoint = True
        router.add_api_route(DEFAULT_PATH + suffix, endpoint, methods=["GET"])
    return router
