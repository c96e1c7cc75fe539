"""The process's one MeterProvider: resource, readers and views.

Built at most once per process (the SDK and prometheus_client registries are
process-wide). Pre-fork servers must call set-up after the fork: the OTLP reader's
export thread does not survive ``fork()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from prometheus_client import CollectorRegistry

from . import catalog
from .config import MAX_CARDINALITY, Settings
from .instruments import INSTRUMENTS

_log = logging.getLogger(__name__)
METER_NAME = "mystocks_otel"


@dataclass
class ProviderState:
    provider: MeterProvider
    settings: Settings
    registry: CollectorRegistry | None  # None when the Prometheus reader is off
    readers: dict[str, MetricReader]
    started_at: float = field(default_factory=time.time)
    last_collection: dict = field(default_factory=dict)


_lock = threading.Lock()
_state: ProviderState | None = None


def current() -> ProviderState | None:
    return _state


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


_instance_ids: dict[int, str] = {}


def _resource(settings: Settings) -> Resource:
    """The resource of every signal this process sends.

    ``Resource.create()`` applies OpenTelemetry's conventions itself: OTEL_SERVICE_NAME,
    then ``service.name`` in OTEL_RESOURCE_ATTRIBUTES, then ``unknown_service:<executable>``.
    A name is passed only when the application chose one (``service_name=``).
    ``service.instance.id`` is one per process: the same for metrics and traces, new after fork.
    """
    instance_id = _instance_ids.setdefault(os.getpid(), str(uuid.uuid4()))
    attributes = {SERVICE_INSTANCE_ID: instance_id}
    if settings.service_name:
        attributes[SERVICE_NAME] = settings.service_name
    return Resource.create(attributes)

def _readers(settings: Settings) -> tuple[dict[str, MetricReader], CollectorRegistry | None]:
    readers: dict[str, MetricReader] = {}
    registry = None
    if "prometheus" in settings.metrics_exporters:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        # Our own registry keeps /metrics free of prometheus_client's default collectors.
        registry = CollectorRegistry(auto_describe=True)
        readers["prometheus"] = PrometheusMetricReader(
            scope_info_enabled=False, registry=registry
        )
    if "otlp" in settings.metrics_exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        # The exporter reads every OTEL_EXPORTER_OTLP_* variable itself.
        readers["otlp"] = PeriodicExportingMetricReader(
            OTLPMetricExporter(), export_interval_millis=settings.export_interval_ms
        )
    return readers, registry


def start(settings: Settings) -> ProviderState:
    """Build the provider once; later calls return the existing one."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        INSTRUMENTS.cardinality_limit = settings.cardinality_limit
        readers, registry = _readers(settings)
        provider = MeterProvider(
            metric_readers=list(readers.values()), resource=_resource(settings), views=views()
        )
        INSTRUMENTS.bind(provider.get_meter(METER_NAME))
        _state = ProviderState(provider, settings, registry, readers)
        if registry is not None and settings.prometheus_port:
            try:
                _serve_standalone(registry, settings)
            except OSError as exc:  # e.g. a second worker: the first one serves the port
                _log.warning("mystocks-otel: cannot bind /metrics on port %s: %s",
                             settings.prometheus_port, exc)
        _log.info("mystocks-otel metrics: readers=%s", ",".join(readers) or "none")
        return _state


def _serve_standalone(registry: CollectorRegistry, settings: Settings) -> None:
    from prometheus_client import start_http_server

    start_http_server(settings.prometheus_port, addr=settings.prometheus_host, registry=registry)
    _log.info("serving /metrics on %s:%s", settings.prometheus_host, settings.prometheus_port)


def force_flush(timeout_millis: float = 5_000) -> None:
    """Push what the readers hold now (bounded)."""
    state = _state
    if state is not None:
        state.provider.force_flush(timeout_millis=timeout_millis)


def shutdown(timeout_millis: float = 5_000) -> None:
    """Flush and stop the readers. Bounded: a dead Collector cannot hold shutdown."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None:
        state.provider.shutdown(timeout_millis=timeout_millis)
