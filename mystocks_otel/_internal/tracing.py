"""HTTP server spans, made by our ASGI layer: one span per request, nothing more.

Upstream's ``FastAPIInstrumentor`` (contrib's ASGI middleware) adds about 127 us per request:
besides the server span it makes one internal span per ``receive`` and ``send`` message,
collects many attributes through several helper layers, and wraps the middleware stack. The
on-call path needs one thing from HTTP tracing: the request's server span, with the stable
semantic conventions, current while the app runs, so that the app's SQL and Redis spans, its
log records and the latency exemplar join it. :class:`ServerSpans` makes exactly that, inside
the layer that already times the request:

- the parent comes from the request's headers (the globally configured propagator: W3C
  ``traceparent``/``baggage`` by default, ``OTEL_PROPAGATORS`` honoured);
- kind SERVER, name ``METHOD route-template`` (``METHOD`` alone when no route matched);
  attributes ``http.request.method`` (``_OTHER`` and ``http.request.method_original`` for
  unknown methods), ``url.path``, ``url.scheme``, ``http.route``,
  ``http.response.status_code``, ``server.address``, ``server.port``. The query string, the
  client's address and its user agent are left out: they may identify a person, and each
  attribute costs on every request (the recommended ``network.protocol.version`` is left out
  for the same cost);
- status ERROR and ``error.type`` on a 5xx or an exception (recorded on the span); a 4xx is
  the client's error and leaves the status unset (semantic conventions for servers);
- an uncaught exception is logged once, with this trace, while the span is current
  (:func:`mystocks_otel._internal.logs.log_uncaught`), when a log feature is on.

Excluded URLs (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``) and the metrics endpoints get no span,
as they get no metric. When FastAPI's native telemetry traces the request itself, its span is
the server span and ours is not made.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import request_span, sampling

_KIND = SpanKind.SERVER
_TRACER_NAME = "mystocks_otel.http"


class _HeaderGetter:
    """ASGI headers as a propagation carrier (lower-case names, latin-1 values)."""

    def get(self, carrier, key):
        name = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == name]
        return values or None

    def keys(self, carrier):
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


def natively_traced(scope) -> bool:
    """FastAPI's native telemetry made a server span for this request (its span wins)."""
    native = scope.get("fastapi.telemetry")
    return native is not None and getattr(native, "span", None) is not None


class ServerSpans:
    """Starts and ends the server span of each request (see the module docstring)."""

    def __init__(self, tracer_provider, log_exceptions: bool = False):
        self.tracer = tracer_provider.get_tracer(_TRACER_NAME)
        sampler = sampling.SAMPLERS.get(tracer_provider)
        #: our tail sampler's provider: the lean request span (:mod:`.request_span`)
        self.roots = request_span.Roots(self.tracer, sampler) if sampler is not None else None
        self.log_exceptions = log_exceptions
        #: the header names the global propagator reads (traceparent, tracestate, baggage...):
        #: a request with none of them has no remote parent, and extracting is skipped
        self._fields = frozenset(f.lower().encode("latin-1")
                                 for f in propagate.get_global_textmap().fields)

    def start(self, scope, method: str):
        """The span and the context token (:meth:`end` must follow), or ``(None, None)`` if
        the SDK failed: the request then runs untraced (telemetry never fails a request)."""
        try:
            return self._start(scope, method)
        except Exception:  # noqa: BLE001
            return None, None

    def _start(self, scope, method: str):
        headers = scope.get("headers") or ()
        fields = self._fields
        parent = None
        for key, _ in headers:
            if key.lower() in fields:
                parent = propagate.extract(headers, getter=_GETTER)
                break
        attributes = {"http.request.method": method, "url.path": scope.get("path", ""),
                      "url.scheme": scope.get("scheme", "http")}
        if method == "_OTHER":
            attributes["http.request.method_original"] = scope.get("method", "")
        server = scope.get("server")
        if server:
            attributes["server.address"] = server[0]
            if server[1] is not None:
                attributes["server.port"] = server[1]
        name = "HTTP" if method == "_OTHER" else method
        span = self.roots.start(name, parent, attributes) if self.roots is not None else None
        if span is None:
            span = self.tracer.start_span(name, context=parent, kind=_KIND, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def exemplar(span) -> tuple[int, int] | None:
        """The request's exemplar ids, ``(trace_id, span_id)``, when its span is sampled
        (the current span's, without looking the context up)."""
        if type(span) is request_span.RequestSpan:
            return span.ids
        context = span.get_span_context()
        if context.trace_flags.sampled and context.is_valid:
            return context.trace_id, context.span_id
        return None

    def failed(self, span, scope, exc: BaseException, route: str | None) -> None:
        """The app raised: recorded on the span, and logged once (while the span is current)."""
        try:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            if self.log_exceptions:
                from . import logs

                logs.log_uncaught(scope, exc, route)
        except Exception:  # noqa: BLE001 - telemetry never changes the app's error
            pass

    @staticmethod
    def end(span, token, method: str, route: str | None, status: int) -> None:
        try:
            attributes = {"http.response.status_code": status}
            name = None
            if route:
                attributes["http.route"] = route
                name = f"{'HTTP' if method == '_OTHER' else method} {route}"
            error = status >= 500
            if error and not (span.attributes or {}).get("error.type"):
                attributes["error.type"] = str(status)
            if type(span) is request_span.RequestSpan:
                span.finish(name, attributes, error, (status, method, route))
                return
            if name is not None:
                span.update_name(name)
            if error:
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(attributes)
            span.end()
        except Exception:  # noqa: BLE001 - never replaces the app's outcome
            pass
        finally:
            otel_context.detach(token)
