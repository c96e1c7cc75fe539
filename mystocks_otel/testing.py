"""Assert on mystocks-otel's metrics in one process: a pytest fixture and the context manager under it.

mystocks-otel keeps process-wide state (the MeterProvider, the runtime with its poller, the
pre-aggregated recorders, the SQLAlchemy and Redis hooks). :func:`capture_metrics` puts all of
it back to the state of a fresh interpreter, starts the provider with an SDK
``InMemoryMetricReader`` (joined by our pre-aggregated histograms) beside the configured
readers, and resets everything again on exit::

    from mystocks_otel.testing import capture_metrics

    with capture_metrics() as metrics:
        app = create_app()                      # calls setup_telemetry(app) as usual
        TestClient(app).post("/orders", json=...)
        assert metrics.value("mystocks.trading.orders", {"side": "buy"}) == 1

Under pytest the same thing is the ``mystocks_metrics`` fixture (registered through the
``pytest11`` entry point, so installing mystocks-otel is enough)::

    def test_orders(mystocks_metrics):
        ...
        assert mystocks_metrics.value("mystocks.trading.orders", {"side": "buy"}) == 1

An app set up at import counts too: with ``from app import app`` at the top of the test file
(the app module calls ``setup_telemetry(app)`` and makes its engine and Redis client at import,
before any fixture runs), the capture resumes that set-up's FastAPI, SQLAlchemy and Redis
hooks, with its settings, on the capture's provider; every test starts from zero. The app is
found among the test module's globals (the fixture) or the caller's (``capture_metrics()``),
and one level into the modules they imported (``import app``). A ``setup_telemetry`` made
inside the capture replaces that resumed set-up with its own settings, as the first set-up of
a fresh interpreter would; the earlier app goes on being measured.

The provider is built when the capture starts, so its settings (exporters, cardinality limit,
metrics token) come from the capture: pass them as ``capture_metrics(cardinality_limit=10)``
or set the environment before the fixture runs. Everything else (``slow_query_seconds``,
``engines``...) comes from ``setup_telemetry`` as usual. The capture never binds a port or
pushes OTLP unless asked to. Spans: pass ``capture.tracer_provider`` to ``setup_telemetry``
and read ``capture.spans()``.

Modelled on opentelemetry-python-contrib's ``TestBase`` and logfire's ``capfire`` fixture.
Importing this module imports nothing heavy, because pytest loads it in every session.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

try:  # pytest is a test-time dependency: capture_metrics works without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

#: Capture defaults that keep a test process self-contained; any of them can be overridden.
CAPTURE_DEFAULTS = {"metrics_exporters": ("prometheus",), "prometheus_port": None}


class MetricsCapture:
    """What a capture hands the test: the in-memory reader and helpers to read points."""

    def __init__(self, reader, settings, tracer_provider, span_exporter):
        self.reader = reader
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.span_exporter = span_exporter

    # -- metrics -------------------------------------------------------------------------
    def metrics(self) -> dict:
        """{catalog name: SDK Metric} as collected now (cumulative, every scope)."""
        data = self.reader.get_metrics_data()
        found = {}
        for resource_metrics in (data.resource_metrics if data else ()):
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str, attributes: Mapping | None = None) -> list:
        """The data points of metric ``name`` whose attributes include ``attributes``.

        ``name`` is the catalog (OpenTelemetry) name, e.g. ``http.server.request.duration``;
        attribute keys are OpenTelemetry keys, e.g. ``{"http.route": "/items/{id}"}``.
        """
        from .catalog import get

        get(name)  # a typo fails loudly instead of matching nothing
        metric = self.metrics().get(name)
        if metric is None:
            return []
        wanted = dict(attributes or {})
        return [point for point in metric.data.data_points
                if all(point.attributes.get(k) == v for k, v in wanted.items())]

    def value(self, name: str, attributes: Mapping | None = None) -> float:
        """The sum of the matching points' values (counters, up-down counters, gauges).

        0 when nothing matches. For histograms use :meth:`count` or :meth:`points`.
        """
        points = self.points(name, attributes)
        if any(not hasattr(point, "value") for point in points):
            raise TypeError(f"{name} is a histogram: use count() or points()")
        return sum(point.value for point in points)

    def count(self, name: str, attributes: Mapping | None = None) -> int:
        """How many measurements the matching histogram points hold."""
        return sum(point.count for point in self.points(name, attributes))

    def series(self, name: str) -> list[dict]:
        """The attribute sets of metric ``name``: one per exported series."""
        return [dict(point.attributes) for point in self.points(name)]

    def prometheus_text(self) -> str:
        """The body ``/metrics`` would serve now (needs the Prometheus reader)."""
        from ._internal import exposition

        rendered = exposition.render()
        if rendered is None:
            raise RuntimeError("the Prometheus reader is off (metrics_exporters)")
        return rendered[0].decode()

    # -- spans ---------------------------------------------------------------------------
    def spans(self) -> list:
        """Finished spans recorded through :attr:`tracer_provider`."""
        return list(self.span_exporter.get_finished_spans())


class _SetUp:
    """A ``setup_telemetry`` made outside the capture, by an app the test module imported at
    its top (``from app import app``: the app module set itself up at import, before any
    fixture ran, and a capture's reset stopped it). The capture resumes it on its own provider.
    """

    def __init__(self, settings, tracer_provider):
        self.settings = settings
        self.tracer_provider = tracer_provider

    @classmethod
    def of(cls, namespace: Mapping | None) -> "_SetUp | None":
        """The set-up of the first set-up app in ``namespace`` (a test module's globals), looking
        one level into the modules it imported (``import app``, ``from myproject import main``)."""
        import sys
        import types

        if not namespace or "starlette.applications" not in sys.modules:
            return None
        from starlette.applications import Starlette

        values = list(namespace.values())
        values += [value for module in values if isinstance(module, types.ModuleType)
                   and not module.__name__.startswith(("mystocks_otel", "fastapi", "starlette"))
                   for value in list(vars(module).values())]
        for value in values:
            if isinstance(value, Starlette):
                handle = getattr(value.state, "mystocks_telemetry", None)
                if handle is not None and handle.runtime is not None:
                    return cls(handle.settings, handle.runtime.tracer_provider)
        return None

    def resume(self) -> None:
        """Start the runtime again with the set-up's settings, on the capture's provider: the
        FastAPI, SQLAlchemy and Redis hooks (they meet the app's engines and clients again at
        their first use) and the poller. Marked adopted: the first ``setup_telemetry`` made in
        the capture replaces it with its own settings (``runtime.Runtime.adopted``)."""
        from ._internal import runtime

        runtime.start(self.settings, (), self.tracer_provider).adopted = True


def reset() -> None:
    """Stop mystocks-otel and forget everything it recorded, as a fresh interpreter would.

    Stops the runtime (poller and instrumentors), shuts the provider down, uninstruments our
    FastAPI, SQLAlchemy and Redis instrumentors and the upstream span instrumentors, forgets
    engines, clients and health reports, and empties every recorder so that the next provider
    starts at zero.
    """
    from ._internal import provider, runtime, state

    runtime.stop()  # the poller, the instrumentors (engines, clients and spans with them), the provider
    runtime.uninstrument_all()  # instrumented by hand, with no runtime
    runtime.instrumentor("redis").untrace()  # upstream's span instrumentor, if a test ran it
    provider.shutdown()  # a provider started without a runtime
    # Reinitialise the process-wide objects in place: modules and middleware hold references
    # to them, so they must stay the same objects.
    state.HEALTH.reset()
    state.INSTRUMENTS.reset()  # empty, and unbound: the next provider binds fresh SDK instruments
    state.reset()  # the first set-up's settings, the distro's logged failure


@contextmanager
def capture_metrics(*, namespace: Mapping | None = None, **options) -> Iterator[MetricsCapture]:
    """Reset mystocks-otel, start it on an in-memory reader, yield a :class:`MetricsCapture`.

    ``options`` override the settings read from the environment, by field name of
    :class:`mystocks_otel.config.Settings`, as for ``setup_telemetry``.

    An app set up at import by a module the caller imported at its top (``from app import
    app``) is measured too: its FastAPI, SQLAlchemy and Redis hooks are resumed inside the
    capture, with its settings. The app is looked for in ``namespace`` (the fixture passes the
    test module's globals), by default the caller's globals.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from . import config
    from ._internal import provider
    from ._internal.sdk_bridge import InMemoryReader  # the SDK's in-memory reader, with our histograms

    settings = config.load().with_overrides(**{**CAPTURE_DEFAULTS, **options})
    if namespace is None:  # the caller's module: capture_metrics() -> contextmanager -> here
        import sys

        namespace = sys._getframe(2).f_globals
    set_up = _SetUp.of(namespace)  # an app set up at import, before the capture
    reset()
    try:
        state = provider.start(settings)
        reader = InMemoryReader()
        state.provider.add_metric_reader(reader)
        if set_up is not None:
            set_up.resume()  # its hooks, recording into the zeroed recorders
        span_exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider(resource=provider.resource(settings))
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        yield MetricsCapture(reader, settings, tracer_provider, span_exporter)
    finally:
        reset()


if pytest is not None:

    @pytest.fixture
    def mystocks_metrics(request) -> Iterator[MetricsCapture]:
        """mystocks-otel reset onto an in-memory reader for one test; see :func:`capture_metrics`.
        An app the test module imported at its top is measured too."""
        module = getattr(request, "module", None)
        with capture_metrics(namespace=vars(module) if module is not None else None) as capture:
            yield capture
