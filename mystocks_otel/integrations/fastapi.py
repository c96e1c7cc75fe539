"""The HTTP and WebSocket metrics of FastAPI apps, as a contrib-style instrumentor.

Entry point ``fastapi`` (alias ``mystocks_fastapi``): the name users of the upstream distro
disable to turn FastAPI's instrumentation off. While :class:`MyStocksFastAPIInstrumentor`
is instrumented, the ASGI layer that ``setup_telemetry`` (or the distro) puts around each
app records ``http.server.*`` and ``mystocks.websocket.*``, and the app gets HTTP spans
when tracing is on. Disabled, the layer stays and still serves ``/metrics``,
``/metrics/health`` and ``/metrics/list`` (the database, Redis, system and business metrics
go on), but records no HTTP or WebSocket metric and makes no HTTP span.
"""

from __future__ import annotations

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

#: What this instrumentor supports (checked by the distro and by ``setup_telemetry``): the ASGI
#: layer needs Starlette's routing, so plain Starlette apps qualify too (FastAPI >= 0.100 brings
#: Starlette >= 0.27).
SUPPORTED = ("starlette >= 0.27",)


class MyStocksFastAPIInstrumentor(BaseInstrumentor):
    """A switch more than a patch: the ASGI layer reads :attr:`recording` per request."""

    def instrumentation_dependencies(self):
        return SUPPORTED

    def _instrument(self, **kwargs) -> None:
        pass  # the state is is_instrumented_by_opentelemetry, set by instrument()

    def _uninstrument(self, **kwargs) -> None:
        pass

    @property
    def recording(self) -> bool:
        return self.is_instrumented_by_opentelemetry
