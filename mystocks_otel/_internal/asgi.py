"""The lean ASGI layer: HTTP server metrics (stable semconv), WebSocket metrics, and the
metrics endpoints, all outside the host app's router.

Pure ASGI (no BaseHTTPMiddleware, no spans): it wraps ``send``/``receive`` and reads
the matched route template from the scope after routing, so raw paths never become
labels and unknown paths fall into one series with no ``http.route``.

* **Placement** (:func:`install`): just inside the app's ``ServerErrorMiddleware``, outside
  the user's middleware and the router, so the requests a middleware answers (a CORS
  preflight, an auth rejection) are counted too.
* **The endpoints** (``/metrics``, ``/metrics/health``, ``/metrics/list``) are answered here,
  before the host's middleware and router: the host's routes, dependencies, exception
  handlers, ``generate_unique_id_function`` and OpenAPI schema never see them. Where they live is
  decided once, lazily (at lifespan start-up or the first request, when the app has declared
  its routes): see :func:`mystocks_otel.endpoints.choose_prefix`.
* **Disabled** (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi``): the layer still serves the
  endpoints, and records no HTTP or WebSocket metric (:mod:`mystocks_otel.integrations.fastapi`).
* **Counted once.** The outermost layer marks the scope; a layer further in (a mounted
  FastAPI sub-app that was set up too, as ``opentelemetry-instrument`` does for every app)
  sees the mark and passes the request through untouched: no second count, no stray
  ``/v2/metrics``. The outer layer labels the request with the full template: the
  application root and the mount prefixes included (``/api/v2/things/{id}``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from time import perf_counter

from .. import endpoints
from . import auth, native_telemetry, tracing
from ..catalog import get
from ..config import Settings
from .instruments import CURRENT_SPAN
from .state import counter, histogram

_log = logging.getLogger(__name__)
_KNOWN_METHODS = get("http.server.request.duration").labels[0].values
_NORMAL_CLOSE = frozenset((1000, 1001, 1005))
#: Set in the scope by the outermost layer: the request is counted (and served) there.
MARKER = "mystocks_otel.counted"


def compile_excluded(patterns: str) -> re.Pattern | None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS semantics: comma-separated, unanchored search."""
    parts = [p.strip() for p in patterns.split(",") if p.strip()]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


def status_label(status: int) -> str:
    """The status code's class, as MYSTOCKS_OTEL_HTTP_GROUP_STATUS_CODES labels it: ``2xx``."""
    return f"{status // 100}xx"


def content_length(headers) -> int | None:
    """The ``content-length`` of ASGI headers when it is one valid non-negative integer, else None."""
    for key, value in headers or ():
        if key.lower() == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


def route_path(scope: dict) -> str:
    """The path inside the app: ``path`` without ``root_path`` (as Starlette routes it)."""
    path, root_path = scope["path"], scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path):len(root_path) + 1] in ("/", ""):
        return path[len(root_path):] or "/"
    return path


def _own_template(scope: dict, app) -> str | None:
    """The template of the route matched inside ``app``, the innermost app routed to."""
    route = scope.get("route")
    # FastAPI >= 0.16x no longer copies included routes: the route in the scope lacks the
    # include_router(prefix=...) part, which FastAPI keeps in its effective route context.
    state = scope.get("fastapi")
    context = state.get("effective_route_context") if isinstance(state, dict) else None
    if context is not None:
        original = getattr(context, "original_route", None)
        if original is route or (route is None and original is not None
                                 and getattr(original, "endpoint", None) is scope.get("endpoint")):
            if not _is_mount(original):
                return getattr(context, "path_format", None) or getattr(original, "path", None)
    if route is not None:
        return None if _is_mount(route) else getattr(route, "path", None)
    # FastAPI's router records no route for plain Starlette routes (/openapi.json, /docs,
    # add_route): find it by the endpoint it put in the scope.
    # A Mount at the root ("/": StaticFiles(html=True) of a single-page app) leaves the
    # root path as it was: its template is its own.
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for candidate in endpoints.routes_of(app):
            if _is_mount(candidate):
                if getattr(candidate, "app", None) is endpoint:
                    return candidate.path + "/{path}"
            elif getattr(candidate, "endpoint", None) is endpoint:
                return getattr(candidate, "path", None)
    return None


def _is_mount(route) -> bool:
    return type(route).__name__ == "Mount"


def mount_prefix(host, scope: dict, entry_root_path: str) -> tuple[str, object]:
    """The templates of the Mounts the request went through (``/v2``, ``/t/{tenant}``), and
    the innermost app reached (None when the chain could not be followed).

    Routing leaves only the innermost route in the scope, so the chain is found again by
    matching the host's Mounts level by level until ``root_path`` is reached. Where a level
    cannot be followed (a sub-app wrapped in middleware), the concrete rest is kept.
    """
    from starlette.routing import Match, Mount

    final = scope.get("root_path", "")
    prefix, current = "", entry_root_path
    probe = {"type": scope["type"], "path": scope["path"], "root_path": current}
    app = host
    routes = endpoints.routes_of(host)
    while current != final and routes:
        for route in routes:
            if not isinstance(route, Mount):
                continue
            match, child = route.matches(probe)
            child_root = child.get("root_path", "")
            if match is Match.FULL and final.startswith(child_root):
                prefix, current = prefix + route.path, child_root
                probe["root_path"] = current
                app, routes = route.app, endpoints.routes_of(route.app)
                break
        else:
            break
    if current != final:
        return prefix + (final[len(current):] if final.startswith(current) else ""), None
    return prefix, app


def route_template(scope: dict, entry_root_path: str, host=None) -> str | None:
    """The full ``http.route``: the application root (semantic conventions: "SHOULD include
    the application root"), the Mounts' templates, then the matched route's template.

    None when nothing matched: every unknown path shares one series.
    """
    if scope.get("root_path", "") == entry_root_path:  # no Mount on the way
        prefix, app = "", host
    else:
        prefix, app = mount_prefix(host, scope, entry_root_path)
    own = _own_template(scope, app)
    if own is None:
        if not prefix:
            return None
        own = "/{path}"  # a miss inside a Mount, or an app without routes (static files)
    return entry_root_path + prefix + own


def install(app, settings: Settings, switch=None, spans=None) -> None:
    """Put the layer around everything the app builds but its error middleware: outside the
    user's middleware (CORS, auth, GZip) and the router, so every request is counted,
    including the ones a middleware answers, and the endpoints answer before anything of the
    app's. Starlette's ``ServerErrorMiddleware`` stays outermost, where contrib's
    FastAPIInstrumentor (ours with tracing on, or the app's own) expects to find it.
    Done, as contrib does, by wrapping the app's ``build_middleware_stack``.
    ``spans`` (a :class:`~mystocks_otel._internal.tracing.ServerSpans`, with tracing on): the
    layer makes each request's server span too.
    """
    from starlette.middleware.errors import ServerErrorMiddleware

    def wrap(stack):
        if isinstance(stack, ServerErrorMiddleware):
            stack.app = MetricsMiddleware(stack.app, settings, host_app=app, switch=switch, spans=spans)
            return stack
        return MetricsMiddleware(stack, settings, host_app=app, switch=switch, spans=spans)  # an unusual stack

    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: wrap(build())
    if getattr(app, "middleware_stack", None) is not None:  # already serving: wrap what runs
        app.middleware_stack = wrap(app.middleware_stack)


def layers(app) -> list:
    """The MetricsMiddleware layers in ``app``'s built middleware stack (outermost first)."""
    stack = app.middleware_stack if app.middleware_stack is not None else app.build_middleware_stack()
    found, seen = [], set()
    while stack is not None and id(stack) not in seen:
        seen.add(id(stack))
        if isinstance(stack, MetricsMiddleware):
            found.append(stack)
        stack = getattr(stack, "app", None)
    return found


class MetricsMiddleware:
    """Counts every request once and answers the metrics endpoints.

    ``settings`` (default: the defaults) give the metrics path, the token and the excluded
    URLs; ``host_app`` is the app whose routes decide where the endpoints live (default:
    ``scope["app"]``); ``excluded_urls`` overrides the settings' value. ``switch`` (our
    ``fastapi`` instrumentor): HTTP and WebSocket metrics are recorded only while its
    ``recording`` is true; the endpoints are served regardless. None: always recorded.
    ``spans``: a :class:`~mystocks_otel._internal.tracing.ServerSpans` when tracing is on (the
    HTTP server span of each measured request), else None.
    """

    def __init__(self, app, settings: Settings | None = None, *, host_app=None,
                 excluded_urls: str | None = None, switch=None, spans=None):
        self.app = app
        self.switch = switch
        self.spans = spans
        self.settings = settings if settings is not None else Settings()
        if excluded_urls is not None:
            self.settings = replace(self.settings, excluded_urls=excluded_urls)
        self.host_app = host_app
        self.prefix: str | None = None
        self._excluded: re.Pattern | None = None
        self._resolved = False
        self._duration = histogram("http.server.request.duration")
        self._request_size = histogram("http.server.request.body.size")
        self._response_size = histogram("http.server.response.body.size")
        self._active = counter("http.server.active_requests")
        self._ws_active = counter("mystocks.websocket.active_connections")
        self._ws_opened = counter("mystocks.websocket.connections_opened")
        self._ws_messages = counter("mystocks.websocket.messages")
        self._ws_errors = counter("mystocks.websocket.connection_errors")
        self._ws_duration = histogram("mystocks.websocket.connection_duration")

    # -- where the endpoints live (decided once the app has declared its routes) ------------
    def resolve(self, host=None) -> None:
        if self._resolved:
            return
        host = self.host_app if self.host_app is not None else host
        try:
            prefix, warning = endpoints.choose_prefix(host, self.settings)
        except Exception:  # noqa: BLE001 - an unreadable router: keep the configured path
            _log.debug("mystocks-otel: could not read the app's routes", exc_info=True)
            prefix, warning = self.settings.metrics_path or endpoints.DEFAULT_PATH, None
        self.prefix = prefix
        self._excluded = compile_excluded(endpoints.excluded_urls(self.settings, prefix))
        self._resolved = True
        if warning:
            _log.warning(warning)

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            if kind == "lifespan" and not self._resolved:
                return await self.app(scope, receive, self._resolve_on_startup(scope, send))
            return await self.app(scope, receive, send)
        if scope.get(MARKER):  # an outer layer counts this request and serves the endpoints
            return await self.app(scope, receive, send)
        scope[MARKER] = True
        host = scope.get("app")  # the app that called us; inner apps overwrite it later
        if not self._resolved:
            self.resolve(host)
        recording = self.switch is None or self.switch.recording
        path = route_path(scope)
        excluded = self._excluded is not None and self._excluded.search(path) is not None
        if kind == "websocket":
            if not recording or excluded:
                return await self.app(scope, receive, send)
            return await self._websocket(scope, receive, send, host)
        suffix = endpoints.suffix_of(path, self.prefix)
        app = self.app if suffix is None else self._serve_endpoint(suffix)
        if not recording or excluded:
            return await app(scope, receive, send)
        measure = not native_telemetry.measures_http(host, scope)  # FastAPI's own metrics win
        traced = self.spans is not None and suffix is None and not tracing.natively_traced(scope)
        if not measure:
            return await (self._traced(scope, receive, send, app, host) if traced
                          else app(scope, receive, send))
        fixed = None if suffix is None else scope.get("root_path", "") + self.prefix + suffix
        await self._http(scope, receive, send, app, host, fixed, traced=traced)

    async def _traced(self, scope, receive, send, app, host):
        """A request FastAPI's native telemetry measures: only its server span is ours."""
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "_OTHER"
        status = 500
        root_path = scope.get("root_path", "")  # the entry's: mounts change it on the way in

        def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        spans = self.spans
        span, token = spans.start(scope, method)
        if span is None:  # the SDK failed: untraced
            return await app(scope, receive, send)
        route = None
        try:
            await app(scope, receive, send_with_status)
        except Exception as exc:
            route = self._template(scope, root_path, host)
            spans.failed(span, scope, exc, route)
            raise
        finally:
            if route is None:
                route = self._template(scope, root_path, host)
            spans.end(span, token, method, route, status)

    def _resolve_on_startup(self, scope, send):
        async def send_resolving(message):
            if message["type"] == "lifespan.startup.complete":
                self.resolve(scope.get("app"))
            await send(message)

        return send_resolving

    # -- the endpoints -------------------------------------------------------------------
    def _serve_endpoint(self, suffix: str):
        async def serve(scope, receive, send):
            accept = next((v.decode("latin-1") for k, v in scope.get("headers") or ()
                           if k.lower() == b"accept"), None)
            options = dict(method=scope["method"], authorization=auth.authorization(scope),
                           accept=accept, token=self.settings.metrics_token)
            if suffix == "" and scope["method"] in ("GET", "HEAD"):
                import anyio.to_thread  # a render takes milliseconds: off the event loop

                reply = await anyio.to_thread.run_sync(lambda: endpoints.answer(suffix, **options))
            else:
                reply = endpoints.answer(suffix, **options)
            headers = [(b"content-type", reply.content_type.encode()),
                       (b"content-length", str(len(reply.body)).encode()),
                       *((k.lower().encode(), v.encode()) for k, v in reply.headers)]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else reply.body})

        return serve

    # -- HTTP ------------------------------------------------------------------------------
    async def _http(self, scope, receive, send, app, host, fixed_route, sizing=False, traced=False):
        """Measures the request; returns the route template it was labelled with.
        ``traced``: the request runs inside its server span (:mod:`.tracing`), current while
        the app runs and while the duration is recorded (its exemplar); the span ends last.
        (``sizing``: called by :meth:`_http_sized`, which measures the body sizes around it.)"""
        if self.settings.http_body_size and not sizing:
            return await self._http_sized(scope, receive, send, app, host, fixed_route, traced)
        method = scope["method"]
        if method not in _KNOWN_METHODS:
            method = "_OTHER"
        status = 500  # what the client gets if the app raises before responding
        root_path = scope.get("root_path", "")

        def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        span = token = route = None
        exemplar = CURRENT_SPAN
        if traced:  # None when the SDK failed: the request runs untraced, still measured
            span, token = self.spans.start(scope, method)
            if span is not None:
                exemplar = self.spans.exemplar(span)
        active = self._active
        active.add(1, method)
        start = perf_counter()
        try:
            await app(scope, receive, send_with_status)
        except Exception as exc:
            if span is not None:
                route = fixed_route or self._template(scope, root_path, host)
                self.spans.failed(span, scope, exc, route)
            raise
        finally:
            duration = perf_counter() - start
            active.add(-1, method)
            if route is None:
                route = fixed_route or self._template(scope, root_path, host)
            self._duration.record(duration, method, route,
                                  status_label(status) if self.settings.group_status_codes else status,
                                  exemplar=exemplar)
            if span is not None:
                self.spans.end(span, token, method, route, status)
        return route

    async def _http_sized(self, scope, receive, send, app, host, fixed_route, traced=False):
        """:meth:`_http` plus the request and response body sizes: Content-Length when the
        message carries a valid one, else the bytes that went through (counted message by
        message, never buffered: a streamed body costs nothing more)."""
        status, response_size = 500, None  # None: no response started (the app raised)
        root_path = scope.get("root_path", "")  # the entry's: mounts change it on the way in
        request_size = content_length(scope.get("headers"))
        counted_receive = receive
        if request_size is None:  # no Content-Length: the bytes the app reads
            request_size = 0

            async def counting_receive():
                nonlocal request_size
                message = await receive()
                if message["type"] == "http.request":
                    request_size += len(message.get("body") or b"")
                return message

            counted_receive = counting_receive

        counting = False  # the response has no Content-Length: count its bytes as they go

        def send_sized(message):
            nonlocal status, response_size, counting
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                response_size = content_length(message.get("headers"))
                counting = response_size is None
                if counting:
                    response_size = 0
            elif counting and kind == "http.response.body":
                response_size += len(message.get("body") or b"")
            return send(message)

        route = None
        try:
            route = await self._http(scope, counted_receive, send_sized, app, host, fixed_route,
                                     sizing=True, traced=traced)
        finally:
            if route is None:  # the app raised: _http recorded the duration, then let it through
                route = fixed_route or self._template(scope, root_path, host)
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "_OTHER"
            if self.settings.group_status_codes:
                status = status_label(status)
            self._request_size.record(request_size, method, route, status)
            if response_size is not None:
                self._response_size.record(response_size, method, route, status)
        return route

    def _template(self, scope, root_path, host):
        try:
            return route_template(scope, root_path, self.host_app or host)
        except Exception:  # noqa: BLE001 - a label must never fail the request
            return None

    # -- WebSocket -------------------------------------------------------------------------
    async def _websocket(self, scope, receive, send, host):
        root_path = scope.get("root_path", "")
        state = {"accepted_at": None, "close_code": None}
        namespace = lambda: self._template(scope, root_path, host)  # noqa: E731 - known after routing

        async def receive_counted():
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                message_type = "text" if message.get("text") is not None else "binary"
                self._ws_messages.add(1, namespace(), "received", message_type)
            elif kind == "websocket.disconnect":
                state["close_code"] = message.get("code", 1000)
            return message

        async def send_counted(message):
            kind = message["type"]
            if kind == "websocket.send":
                message_type = "text" if message.get("text") is not None else "binary"
                self._ws_messages.add(1, namespace(), "sent", message_type)
            elif kind == "websocket.accept":
                state["accepted_at"] = perf_counter()
                self._ws_opened.add(1, namespace())
                self._ws_active.add(1, namespace())
            elif kind == "websocket.close":
                state["close_code"] = message.get("code", 1000)
                if state["accepted_at"] is None:
                    self._ws_errors.add(1, namespace(), "rejected")
            await send(message)

        try:
            await self.app(scope, receive_counted, send_counted)
        except Exception:
            self._ws_errors.add(1, namespace(), "exception")
            raise
        finally:
            if state["accepted_at"] is not None:
                ns = namespace()
                self._ws_active.add(-1, ns)
                self._ws_duration.record(perf_counter() - state["accepted_at"], ns)
                if state["close_code"] not in _NORMAL_CLOSE and state["close_code"] is not None:
                    self._ws_errors.add(1, ns, "abnormal_close")
