"""The process's one MeterProvider: resource, readers and views.

Built at most once per process (the SDK and prometheus_client registries are
process-wide). Pre-fork servers (gunicorn ``--preload``) may build it before the fork:
the SDK gives each child its own ``service.instance.id`` and export thread, and
:mod:`mystocks_otel._internal.prefork` keeps the fork from copying held locks (docs/OTLP_WORKERS.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

from .. import catalog
from ..config import MAX_CARDINALITY, Settings
from . import app_meters, export_health, server_log, state
from .state import APP_INSTRUMENTS, INSTRUMENTS

_log = logging.getLogger(__name__)
METER_NAME = "mystocks_otel"


@dataclass
class ProviderState:
    provider: MeterProvider
    settings: Settings
    resource: Resource  # target_info on /metrics
    #: reader name -> SDK reader; "prometheus" maps to None: /metrics is rendered from the
    #: recorders by mystocks_otel._internal.exposition, with no SDK collection on the scrape path
    readers: dict[str, MetricReader | None]
    multiprocess: object | None = None  # a multiprocess.Store when several workers share /metrics
    #: what set-up did about the app's own instruments: set, ours, other, off (app_meters)
    app_meters: str = "off"
    started_at: float = field(default_factory=time.time)
    last_collection: dict = field(default_factory=dict)


def current() -> ProviderState | None:
    """The process's provider (kept by :mod:`.state`), or None before set-up."""
    return state.provider()


def views(cardinality_limit: int = MAX_CARDINALITY) -> list[View]:
    """An attribute allow-list and a cardinality limit per catalog metric.

    Our recorders already emit only allowed keys; the views also bound anything else
    that records into these names (and make the allow-list visible to SDK users).
    Histogram buckets travel with the instruments (``explicit_bucket_boundaries_advisory``).

    The recorders keep ``MYSTOCKS_OTEL_CARDINALITY_LIMIT`` series per metric, plus one
    overflow series of their own. The SDK caps every stream too (2000 unless told), with a
    view's ``aggregation_cardinality_limit`` winning over each reader's default, for
    observable instruments as well. The views therefore give the SDK one slot more than
    the recorders can fill, so the SDK's cap never bites before ours. The default leaves
    room for the largest limit the settings accept.
    """
    return [
        View(instrument_name=spec.name,
             attribute_keys=set(spec.attribute_keys) | {catalog.OVERFLOW_ATTRIBUTE},
             aggregation_cardinality_limit=cardinality_limit + 1)
        for spec in catalog.METRICS
    ]


def resource(settings: Settings) -> Resource:
    """The resource of every signal this process sends.

    ``Resource.create()`` applies OpenTelemetry's conventions itself: OTEL_SERVICE_NAME,
    then ``service.name`` in OTEL_RESOURCE_ATTRIBUTES, then ``unknown_service:<executable>``.
    A name is passed only when the application chose one (``service_name=``).
    ``service.instance.id`` is one per process: the same for metrics and traces, new after fork.
    """
    attributes = {SERVICE_INSTANCE_ID: state.instance_id()}
    if settings.service_name:
        attributes[SERVICE_NAME] = settings.service_name
    return Resource.create(attributes)


def _readers(settings: Settings) -> dict[str, MetricReader | None]:
    """The SDK readers by name. Pull needs none (see :class:`ProviderState`); the OTLP
    reader joins our pre-aggregated histograms to what the SDK collected (sdk_bridge)."""
    readers: dict[str, MetricReader | None] = {}
    if "prometheus" in settings.metrics_exporters:
        readers["prometheus"] = None
    if "otlp" in settings.metrics_exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        from .sdk_bridge import PeriodicReader

        # The exporter reads every OTEL_EXPORTER_OTLP_* variable itself.
        readers["otlp"] = PeriodicReader(
            export_health.watch(OTLPMetricExporter(), "otlp", state.EXPORT_STATUSES,
                                state.counter(export_health.EXPORT_FAILURES)),  # for /metrics/health
            export_interval_millis=settings.export_interval_ms,
            cardinality_limits=_cardinality_limits(settings.cardinality_limit),
        )
    return readers


def _cardinality_limits(limit: int) -> dict:
    """The SDK's cap per stream for instruments no view names (the app's own): one above ours,
    so our recorders' overflow series is the one that counts (see :func:`views`)."""
    from opentelemetry.sdk.metrics import (ObservableCounter, ObservableGauge,
                                           ObservableUpDownCounter)

    return {cls: limit + 1 for cls in (ObservableCounter, ObservableUpDownCounter, ObservableGauge)}


def start(settings: Settings) -> ProviderState:
    """Build the provider once; later calls return the existing one."""
    return state.start_provider(lambda: _build(settings))[0]


def _build(settings: Settings) -> ProviderState:
    INSTRUMENTS.configure(settings)  # cardinality limit, HTTP buckets: before the store sizes its files
    readers = _readers(settings)
    resource_ = resource(settings)
    provider = MeterProvider(
        metric_readers=[r for r in readers.values() if r is not None], resource=resource_,
        views=views(),
    )
    INSTRUMENTS.bind(provider.get_meter(METER_NAME))
    for reader in readers.values():
        if reader is not None:
            reader.resource = resource_  # for a collection where the SDK itself had nothing
    # the app's own instruments: exported on a meter of their own scope
    APP_INSTRUMENTS.bind_all(lambda scope: provider.get_meter(scope[0], scope[1] or None,
                                                             scope[2] or None))
    built = ProviderState(provider, settings, resource_, readers)
    built.app_meters = app_meters.install_global(APP_INSTRUMENTS, provider, settings)
    # The standalone port (OTEL_EXPORTER_PROMETHEUS_PORT) is started by setup_telemetry
    # (mystocks_otel._internal.standalone): it serves the endpoints, which read the state.
    if "prometheus" in readers:
        built.multiprocess = _multiprocess_store(settings.multiprocess_dir)
    mode = (built.multiprocess.describe() if built.multiprocess is not None
            else "single-process mode")
    if built.multiprocess is None:
        # No workers, so none can crash (a restart resets the server's totals instead). The
        # series is there, at 0, on every target; in multiprocess mode the merge counts them.
        INSTRUMENTS["mystocks.system.worker_crashes"].add(0)
    _announce(f"mystocks-otel metrics: readers={','.join(readers) or 'none'}; {mode}")
    return built


def _announce(message: str) -> None:
    """A start-up line where the operator sees it (the server's own log, else ours)."""
    server_log.log(logging.INFO, message, _log)


def _multiprocess_store(base: str | None):
    """The shared store when this process is a worker of a multiprocess server, else None.
    An unsafe directory (UnsafeDirectoryError) is not caught: the server must not start."""
    try:
        from .multiprocess import Store  # fcntl: POSIX only

        return Store.start(INSTRUMENTS, base=base, app=APP_INSTRUMENTS)
    except (ImportError, OSError) as exc:  # no usable directory: each worker answers for itself
        _log.warning("mystocks-otel: multiprocess mode unavailable (%s): single-process mode", exc)
        return None


def force_flush(timeout_millis: float = 5_000) -> None:
    """Push what the readers hold now (bounded)."""
    current_ = state.provider()
    if current_ is not None:
        current_.provider.force_flush(timeout_millis=timeout_millis)


def shutdown(timeout_millis: float = 5_000) -> None:
    """Flush and stop the readers. Bounded: a dead Collector cannot hold shutdown."""
    current_ = state.take_provider()
    if current_ is not None:
        current_.provider.shutdown(timeout_millis=timeout_millis)
