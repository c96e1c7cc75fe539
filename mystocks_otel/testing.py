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
def capture_metrics(**options) -> Iterator[MetricsCapture]:
    """Reset mystocks-otel, start it on an in-memory reader, yield a :class:`MetricsCapture`.

    ``options`` override the settings read from the environment, by field name of
    :class:`mystocks_otel.config.Settings`, as for ``setup_telemetry``.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from . import config
    from ._internal import provider
    from ._internal.sdk_bridge import InMemoryReader  # the SDK's in-memory reader, with our histograms

    settings = config.load().with_overrides(**{**CAPTURE_DEFAULTS, **options})
    reset()
    try:
        state = provider.start(settings)
        reader = InMemoryReader()
        state.provider.add_metric_reader(reader)
        span_exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider(resource=provider.resource(settings))
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        yield MetricsCapture(reader, settings, tracer_provider, span_exporter)
    finally:
        reset()


if pytest is not None:

    @pytest.fixture
    def mystocks_metrics() -> Iterator[MetricsCapture]:
        """mystocks-otel reset onto an in-memory reader for one test; see :func:`capture_metrics`."""
        with capture_metrics() as capture:
            yield capture
