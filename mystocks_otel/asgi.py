"""The lean ASGI layer: HTTP server metrics (stable semconv) and WebSocket metrics.

Pure ASGI (no BaseHTTPMiddleware, no spans): it wraps ``send``/``receive`` and reads
the matched route template from the scope after routing, so raw paths never become
labels and unknown paths fall into one series with no ``http.route``.
"""

from __future__ import annotations

import re
from time import perf_counter

from .catalog import get
from .config import DEFAULT_EXCLUDED_URLS
from .instruments import counter, histogram

_KNOWN_METHODS = get("http.server.request.duration").labels[0].values
_NORMAL_CLOSE = frozenset((1000, 1001, 1005))


def compile_excluded(patterns: str) -> re.Pattern | None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS semantics: comma-separated, unanchored search."""
    parts = [p.strip() for p in patterns.split(",") if p.strip()]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


def route_template(scope: dict, root_path: str) -> str | None:
    """The matched route's template, including any Mount prefixes added below us."""
    # FastAPI >= 0.16x no longer copies included routes: the route in the scope lacks the
    # include_router(prefix=...) part, which FastAPI keeps in its effective route context.
    state = scope.get("fastapi")
    context = state.get("effective_route_context") if isinstance(state, dict) else None
    path = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    if path is None:
        return None
    return scope.get("root_path", "")[len(root_path):] + path


class MetricsMiddleware:
    def __init__(self, app, excluded_urls: str = DEFAULT_EXCLUDED_URLS):
        self.app = app
        self._excluded = compile_excluded(excluded_urls)
        self._duration = histogram("http.server.request.duration")
        self._active = counter("http.server.active_requests")
        self._ws_active = counter("mystocks.websocket.active_connections")
        self._ws_opened = counter("mystocks.websocket.connections_opened")
        self._ws_messages = counter("mystocks.websocket.messages")
        self._ws_errors = counter("mystocks.websocket.connection_errors")
        self._ws_duration = histogram("mystocks.websocket.connection_duration")

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            if self._excluded is not None and self._excluded.search(scope["path"]):
                return await self.app(scope, receive, send)
            return await self._http(scope, receive, send)
        if kind == "websocket":
            return await self._websocket(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _http(self, scope, receive, send):
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

        active = self._active
        active.add(1, method)
        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            duration = perf_counter() - start
            active.add(-1, method)
            self._duration.record(duration, method, route_template(scope, root_path), status)

    async def _websocket(self, scope, receive, send):
        root_path = scope.get("root_path", "")
        state = {"accepted_at": None, "close_code": None}
        namespace = lambda: route_template(scope, root_path)  # noqa: E731 - known after routing

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
