"""Pre-aggregated histograms (ours and the app's) and prometheus_client's registry joining the
SDK's readers (OTLP keeps the SDK's exporter).

The Python SDK has no ``MetricProducer`` (the specification's bridge for data aggregated
outside the SDK). Its one seam: every reader's ``collect()`` hands the ``MetricsData`` it
collected to ``MetricReader._receive_metrics`` (a protected method the SDK documents for
subclasses): the periodic reader passes it on to ``exporter.export``, the in-memory reader
keeps it. :class:`JoinHistograms` overrides that method and adds our histograms, as the
SDK's own explicit-bucket aggregation would have made them: same name, unit, description,
attributes, bounds, min/max, the reader's temporality (cumulative by default, with the
recorder's start time; delta against what this reader last received), and the latest
exemplar of each bucket when tracing is on.

The app's own histograms (:mod:`.app_metrics`) join the same way, each under its own
meter's scope, and so do prometheus_client's default registry's families
(:mod:`.client_registry`, scope ``prometheus_client``).

A gap of the seam, closed here: ``MetricReader.collect`` (final) calls ``_receive_metrics``
only when the SDK's own collection found something. :class:`JoinHistograms` therefore wraps
the collection callback the provider registers (``_set_collect_callback``): a collection
that found nothing yields an empty ``MetricsData`` of the reader's resource, so our data
still goes out, and nothing is exported when nobody has anything.
"""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics._internal.instrument import _Histogram  # the reader's temporality key
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from opentelemetry.sdk.resources import Resource

from . import client_registry, state
from ..catalog import Kind
from .instruments import HistogramRecorder, Instruments
from .state import APP_INSTRUMENTS, INSTRUMENTS
from .prefork import ForkSafeExport

_log = logging.getLogger(__name__)
SCOPE_NAME = "mystocks_otel"  # the meter the observable instruments are made on


def _exemplars(kept: list | None) -> list[Exemplar]:
    if not kept:
        return []
    return [Exemplar({}, value, int(at * 1e9), span_id, trace_id)
            for trace_id, span_id, value, at in filter(None, kept)]


def histogram_metric(recorder: HistogramRecorder, now_ns: int, delta_from: dict | None) -> Metric | None:
    """One SDK ``Metric`` for a recorder, or None when it has no series.

    ``delta_from`` is None for cumulative points; for delta points it maps each key to
    ``(array, time)`` last sent, and is updated in place.
    """
    width, bounds = recorder.width, recorder.bounds
    exemplars = recorder.exemplars()
    points = []
    for key, series in recorder.snapshot():
        start, counts, total = recorder.start_time_ns, series[:width], series[-3]
        low, high = series[-2], series[-1]
        if delta_from is not None:
            previous, since = delta_from.get(key, (None, recorder.start_time_ns))
            delta_from[key] = (series, now_ns)
            start = since
            if previous is not None:
                counts = [a - b for a, b in zip(counts, previous[:width])]
                total -= previous[-3]
        count = sum(counts)
        if delta_from is not None and not count:
            continue
        points.append(HistogramDataPoint(
            attributes=recorder.attributes_of(key), start_time_unix_nano=start,
            time_unix_nano=now_ns, count=count, sum=total, bucket_counts=counts,
            explicit_bounds=bounds, min=low, max=high,
            exemplars=_exemplars(exemplars.get(key)),
        ))
    if not points:
        return None
    temporality = (AggregationTemporality.CUMULATIVE if delta_from is None
                   else AggregationTemporality.DELTA)
    spec = recorder.spec
    return Metric(spec.name, spec.description, spec.unit, Histogram(points, temporality))


def join(data: MetricsData, metrics: list[Metric] | dict) -> MetricsData:
    """``data`` with ``metrics`` added: a list goes to our scope; a dict maps a scope
    ``(name, version, schema URL)`` to its metrics. A scope the SDK had no data for is made."""
    if isinstance(metrics, list):
        metrics = {(SCOPE_NAME, "", ""): metrics} if metrics else {}
    metrics = {scope: found for scope, found in metrics.items() if found}
    if not metrics or not data.resource_metrics:
        return data
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    for (name, version, schema_url), found in metrics.items():
        for i, scope_metrics in enumerate(scopes):
            scope = scope_metrics.scope
            if (scope.name, scope.version or "", scope.schema_url or "") == (name, version, schema_url):
                scopes[i] = ScopeMetrics(scope, [*scope_metrics.metrics, *found],
                                         scope_metrics.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope(name, version or None, schema_url or None),
                                       found, schema_url))
    return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def empty(resource: Resource) -> MetricsData:
    return MetricsData([ResourceMetrics(resource, [], "")])


class JoinHistograms:
    """Mix into any SDK ``MetricReader``: its collections carry our histograms too."""

    instruments: Instruments = INSTRUMENTS
    app = APP_INSTRUMENTS
    resource: Resource | None = None  # set by the provider: the resource of an empty collection

    def _set_collect_callback(self, func) -> None:
        """Every collection reaches ``_receive_metrics``, even when the SDK found nothing."""
        if func is None:
            return super()._set_collect_callback(func)

        def collect(reader, *args, **kwargs):
            data = func(reader, *args, **kwargs)
            if data is None:
                data = empty(self.resource or Resource.get_empty())
            return data

        super()._set_collect_callback(collect)

    def _histograms(self, recorders=None) -> list[Metric]:
        return [metric for _, metric in self._histogram_pairs(recorders)]

    def _histogram_pairs(self, recorders=None) -> list[tuple]:
        """``(recorder, Metric)`` for each histogram recorder with points to send."""
        delta = (self._instrument_class_temporality.get(_Histogram)
                 is AggregationTemporality.DELTA)
        if delta and not hasattr(self, "_sent"):
            self._sent: dict[str, dict] = {}
            self._sent_lock = threading.Lock()
        now_ns = time.time_ns()
        found = []
        for recorder in (self.instruments if recorders is None else recorders):
            if recorder.spec.kind is not Kind.HISTOGRAM:
                continue
            if delta:
                with self._sent_lock:
                    metric = histogram_metric(recorder, now_ns, self._sent.setdefault(recorder.spec.name, {}))
            else:
                metric = histogram_metric(recorder, now_ns, None)
            if metric is not None:
                found.append((recorder, metric))
        return found

    def _joined(self) -> dict:
        """``{scope: [Metric]}``: our histograms, the app's by its meters' scopes, the registry's."""
        found = {(SCOPE_NAME, "", ""): self._histograms()}
        for recorder, metric in self._histogram_pairs(list(self.app)):
            found.setdefault(recorder.spec.scope, []).append(metric)
        current = state.provider()
        if current is not None:
            from .exposition import taken_names

            ours = [(r.spec, None, None) for r in (*self.instruments, *self.app)]
            found[(client_registry.SCOPE_NAME, "", "")] = client_registry.otlp_metrics(
                current.settings, taken_names(ours))
        return found

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                         **kwargs) -> None:
        try:
            metrics_data = join(metrics_data, self._joined())
        except Exception:  # noqa: BLE001 - the SDK's own data must still go out
            _log.warning("mystocks-otel: histograms left out of this export", exc_info=True)
        if not any(scope.metrics for rm in metrics_data.resource_metrics
                   for scope in rm.scope_metrics):
            return  # nobody had anything: nothing to send
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)


class PeriodicReader(ForkSafeExport, JoinHistograms, PeriodicExportingMetricReader):
    """The SDK's periodic (OTLP) reader, with our histograms; safe across fork() (prefork)."""


class InMemoryReader(JoinHistograms, InMemoryMetricReader):
    """The SDK's in-memory reader (tests), with our histograms."""
