"""Instruments made from the catalog, and the fast recording path.

The OTel SDK's ``Counter.add`` costs ~5.7 us and ``Histogram.record`` ~6 us. Every
metric is therefore pre-aggregated here, in small lock-protected dicts (sync endpoints
run in a thread pool): totals, last values, and per series one bounded bucket array
(counts per catalog bucket, then sum, min and max). ``/metrics`` is rendered straight
from these recorders (:mod:`mystocks_otel._internal.exposition`). For OTLP, counters and gauges
reach the SDK through *observable* instruments; histograms, which the SDK cannot
observe, join each reader's collected data at ``MetricReader._receive_metrics``
(:mod:`mystocks_otel._internal.sdk_bridge`).

In multiprocess mode (:mod:`mystocks_otel._internal.multiprocess`) each recorder also mirrors
every value it changes into this process's memory-mapped file (its ``sink``), so that
any worker can merge all workers' values, and a worker killed by SIGKILL loses nothing.

Every recorder is bounded: at most ``cardinality_limit`` attribute sets per metric;
past that, measurements go to one ``otel.metric.overflow=true`` series and totals
stay right. A recorder never raises: bad input is dropped and counted.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from bisect import bisect_left
from dataclasses import replace
from typing import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import get_current_span

from .. import catalog
from ..catalog import OTHER, OVERFLOW_ATTRIBUTE, Kind, MetricSpec

_log = logging.getLogger(__name__)

_INF = math.inf
#: ``HistogramRecorder.record``'s default exemplar: the current span's, looked up
CURRENT_SPAN = object()
_MAX = sys.float_info.max  # "-_MAX <= x < _INF" rejects NaN and both infinities
OVERFLOW_KEY = ("\0overflow",)
_OVERFLOW_ATTRIBUTES = {OVERFLOW_ATTRIBUTE: True}
#: Histograms that keep the latest exemplar of each bucket when tracing is on.
EXEMPLAR_METRICS = ("http.server.request.duration", "mystocks.db.query_duration",
                    "mystocks.redis.command_duration")
DROPPED = "mystocks.telemetry.dropped_measurements"
HTTP_DURATION = "http.server.request.duration"
SANITIZED = "mystocks.telemetry.sanitized_attributes"


class Recorder:
    """Validates and bounds attribute values; subclasses hold the data."""

    def __init__(self, spec: MetricSpec, instruments: "Instruments"):
        self.spec = spec
        self._instruments = instruments
        self._keys = spec.attribute_keys
        self._allowed = tuple(lbl.values for lbl in spec.labels)
        self._lock = threading.Lock()
        # raw values -> canonical key, for inputs that needed no sanitizing (fast path)
        self._clean: dict[tuple, tuple] = {}
        # canonical key -> OTel attributes; its size is the series count
        self._attributes: dict[tuple, dict] = {}
        #: where every changed value is mirrored (multiprocess mode), else None
        self.sink = None
        self.sink_offsets: dict[tuple, int] = {}  # key -> where the sink keeps it
        #: when this recorder started counting (the start of its cumulative points)
        self.start_time_ns = time.time_ns()

    # -- attribute handling ------------------------------------------------------------
    def _key(self, values: tuple) -> tuple:
        key = self._clean.get(values)
        return key if key is not None else self._admit(values)

    def _admit(self, values: tuple) -> tuple:
        if len(values) != len(self._keys):
            raise TypeError(f"{self.spec.name} takes {len(self._keys)} attribute values")
        sanitized = False
        canonical = []
        for allowed, value in zip(self._allowed, values):
            if allowed is not None and value not in allowed:
                value, sanitized = OTHER, True
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                value = str(value)
            canonical.append(value)
        key = tuple(canonical)
        with self._lock:
            if key not in self._attributes:
                if len(self._attributes) >= self._instruments.cardinality_limit:
                    self._report(SANITIZED, "overflow")
                    return OVERFLOW_KEY
                self._attributes[key] = {
                    k: v for k, v in zip(self._keys, key) if v is not None
                }
            if sanitized:
                self._report(SANITIZED, "value_not_allowed")
            elif len(self._clean) < 2 * self._instruments.cardinality_limit:
                self._clean[values] = key
        return key

    def values_from_attributes(self, attributes: dict | None) -> tuple:
        """Positional values from an attribute dict; unknown keys are stripped and counted."""
        attributes = attributes or {}
        unknown = len(attributes.keys() - set(self._keys))
        if unknown:
            self._report(SANITIZED, "unknown_key", unknown)
        return tuple(attributes.get(k) for k in self._keys)

    def attributes_of(self, key: tuple) -> dict:
        return _OVERFLOW_ATTRIBUTES if key is OVERFLOW_KEY else self._attributes[key]

    @property
    def series_count(self) -> int:
        return len(self._attributes)

    def clear_values(self) -> None:
        """Forget recorded values (a forked child must not count its parent's again)."""
        with self._lock:
            self._data.clear()
        self.start_time_ns = time.time_ns()

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent thread may have held this one at the fork),
        no sink (the parent's file), and the parent's counts forgotten; gauges keep their
        last value."""
        self._lock = threading.Lock()
        self.sink, self.sink_offsets = None, {}
        if self.spec.kind is not Kind.GAUGE:
            self.clear_values()

    def snapshot(self) -> list[tuple[tuple, object]]:
        """``[(key, value)]`` now; a histogram's value is a copy of its bucket array."""
        with self._lock:
            return list(self._data.items())

    # -- self-metrics ------------------------------------------------------------------
    def _report(self, metric: str, reason: str, count: int = 1) -> None:
        if self.spec.name in (DROPPED, SANITIZED):
            return  # never recurse into our own health counters
        self._instruments[metric].add(count, self.spec.name, reason)

    def _drop(self, value: float) -> None:
        reason = "nan" if math.isnan(value) else "infinite" if math.isinf(value) else "negative"
        self._report(DROPPED, reason)

    def _error(self) -> None:
        _log.debug("recorder %s dropped a measurement", self.spec.name, exc_info=True)
        try:
            self._report(DROPPED, "error")
        except Exception:  # noqa: BLE001 - a recorder must never raise
            pass

    def bind(self, meter: Meter) -> None:
        raise NotImplementedError


class SumRecorder(Recorder):
    """A counter (monotonic) or up-down counter, pre-aggregated."""

    def __init__(self, spec: MetricSpec, instruments: "Instruments"):
        super().__init__(spec, instruments)
        self._totals: dict[tuple, float] = {}
        self._data = self._totals
        self._monotonic = spec.kind is Kind.COUNTER
        self._minimum = 0.0 if self._monotonic else -_MAX

    def add(self, amount: float = 1, *values) -> None:
        try:
            key = self._clean.get(values)  # self._key() inlined: this is the hot path
            if key is None:
                key = self._admit(values)
            if not self._minimum <= amount < _INF:  # also NaN; raises on non-numbers
                return self._drop(amount)
            with self._lock:
                total = self._totals[key] = self._totals.get(key, 0) + amount
                if self.sink is not None:
                    self.sink.set(self, key, total)
        except Exception:  # noqa: BLE001
            self._error()

    def set_total(self, total: float, *values) -> None:
        """For totals kept elsewhere (Redis INFO evicted_keys): store the absolute value."""
        try:
            key = self._key(values)
            if not self._minimum <= total < _INF:
                return self._drop(total)
            with self._lock:
                self._totals[key] = total
                if self.sink is not None:
                    self.sink.set(self, key, total)
        except Exception:  # noqa: BLE001
            self._error()

    def value(self, *values) -> float:
        return self._totals.get(self._key(values), 0)

    def observe(self, _options: CallbackOptions | None = None) -> Iterable[Observation]:
        with self._lock:
            items = list(self._totals.items())
        return [Observation(total, self.attributes_of(key)) for key, total in items]

    def bind(self, meter: Meter) -> None:
        create = (meter.create_observable_counter if self._monotonic
                  else meter.create_observable_up_down_counter)
        create(self.spec.name, [self.observe], self.spec.unit, self.spec.description)


class GaugeRecorder(Recorder):
    """The last value set, per attribute set."""

    def __init__(self, spec: MetricSpec, instruments: "Instruments"):
        super().__init__(spec, instruments)
        self._values: dict[tuple, float] = {}
        self._data = self._values

    def set(self, value: float, *values) -> None:
        try:
            key = self._key(values)
            value = float(value)  # rejects None and strings before they reach an exporter
            if not -_MAX <= value < _INF:
                return self._drop(value)
            with self._lock:
                self._values[key] = value
                if self.sink is not None:
                    self.sink.set(self, key, value)
        except Exception:  # noqa: BLE001
            self._error()

    def value(self, *values) -> float | None:
        return self._values.get(self._key(values))

    def observe(self, _options: CallbackOptions | None = None) -> Iterable[Observation]:
        with self._lock:
            items = list(self._values.items())
        return [Observation(value, self.attributes_of(key)) for key, value in items]

    def bind(self, meter: Meter) -> None:
        meter.create_observable_gauge(self.spec.name, [self.observe], self.spec.unit,
                                      self.spec.description)


class HistogramRecorder(Recorder):
    """Explicit-bucket histograms, pre-aggregated: one array per series.

    The array holds the count of each bucket (``len(bounds) + 1``, the last one above
    every bound), then the sum, the minimum and the maximum. A value ``v`` falls in the
    first bucket whose bound is ``>= v`` (Prometheus ``le``; the SDK does the same).
    """

    def __init__(self, spec: MetricSpec, instruments: "Instruments"):
        super().__init__(spec, instruments)
        self.bounds: tuple[float, ...] = tuple(float(b) for b in spec.buckets or ())
        self.width = len(self.bounds) + 1  # bucket counts, then SUM, MIN, MAX
        self._series: dict[tuple, list] = {}
        self._data = self._series
        #: None, or a callable returning ``(trace_id, span_id)`` of the current sampled span
        self.exemplar_source = None
        #: None, or the tail sampler's ``exemplar_gate(trace_id, commit) -> bool``
        self.exemplar_gate = None
        self._exemplars: dict[tuple, list] = {}  # key -> per bucket None or (trace, span, value, time)

    def _new_series(self) -> list:
        return [0] * self.width + [0.0, _INF, -_INF]

    def set_buckets(self, buckets: Iterable[float] | None) -> None:
        """Use ``buckets`` (None: the catalog's) from now on. Set-up calls it before any
        worker file is made; series recorded with other bounds are forgotten (their arrays
        do not fit). ``spec.buckets`` follows, so every door renders the bounds recorded."""
        catalog_spec = catalog.BY_NAME.get(self.spec.name, self.spec)
        bounds = tuple(float(b) for b in (buckets if buckets is not None else catalog_spec.buckets or ()))
        if bounds == self.bounds:
            return
        with self._lock:
            self.spec = replace(catalog_spec, buckets=bounds)
            self.bounds, self.width = bounds, len(bounds) + 1
            self._series.clear()
            self._exemplars.clear()

    def record(self, value: float, *values, exemplar=CURRENT_SPAN) -> None:
        """``exemplar``: by default the current span's ids (when exemplars are on); a caller
        that holds the span passes its ``(trace_id, span_id)``, or None for no exemplar."""
        try:
            key = self._clean.get(values)  # self._key() inlined: this is the hot path
            if key is None:
                key = self._admit(values)
            if not 0 <= value < _INF:
                return self._drop(value)
            index = bisect_left(self.bounds, value)
            source = self.exemplar_source
            if source is None:
                exemplar = None
            elif exemplar is CURRENT_SPAN:
                exemplar = source()
            if exemplar is not None and self.exemplar_gate is not None:
                exemplar = self._gated(key, index, value, exemplar)
            with self._lock:
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = self._new_series()
                series[index] += 1
                series[-3] += value
                if value < series[-2]:
                    series[-2] = value
                if value > series[-1]:
                    series[-1] = value
                if exemplar is not None:
                    self._keep_exemplar(key, index, value, exemplar)
                if self.sink is not None:
                    self.sink.observe(self, key, series, index)
        except Exception:  # noqa: BLE001
            self._error()

    def _gated(self, key: tuple, index: int, value: float, ids: tuple) -> tuple | None:
        """Tail sampling: ``ids`` when its trace is kept already; else None, and the exemplar
        is committed later if the trace is kept (:meth:`TailSampler.exemplar_gate`)."""
        at = time.time()

        def commit() -> None:
            try:
                with self._lock:
                    if key in self._series and index < self.width:
                        self._keep_exemplar(key, index, value, ids, at)
            except Exception:  # noqa: BLE001 - a recorder never raises
                self._error()

        return ids if self.exemplar_gate(ids[0], commit) else None

    def _keep_exemplar(self, key: tuple, index: int, value: float, ids: tuple,
                       at: float | None = None) -> None:
        """The latest exemplar of each bucket: (trace id, span id, value, Unix seconds)."""
        kept = self._exemplars.get(key)
        if kept is None:
            kept = self._exemplars[key] = [None] * self.width
        kept[index] = (ids[0], ids[1], value, time.time() if at is None else at)
        if self.sink is not None:
            self.sink.exemplar(self, key, index, kept[index])

    def snapshot(self) -> list[tuple[tuple, list]]:
        with self._lock:
            return [(key, series[:]) for key, series in self._series.items()]

    def exemplars(self) -> dict[tuple, list]:
        with self._lock:
            return {key: kept[:] for key, kept in self._exemplars.items()}

    def clear_values(self) -> None:
        with self._lock:
            self._exemplars.clear()
        super().clear_values()

    def count(self, *values) -> int:
        """Measurements recorded for one attribute set (tests and health checks)."""
        series = self._series.get(self._key(values))
        return sum(series[:self.width]) if series is not None else 0

    def bind(self, meter: Meter) -> None:
        """Nothing to create: histograms reach OTLP through :mod:`mystocks_otel._internal.sdk_bridge`."""


def current_span_ids() -> tuple[int, int] | None:
    """``(trace_id, span_id)`` of the current span when it is sampled, else None."""
    context = get_current_span().get_span_context()
    if context.trace_flags.sampled and context.is_valid:
        return context.trace_id, context.span_id
    return None


_RECORDER_CLASSES = {
    Kind.COUNTER: SumRecorder,
    Kind.UPDOWN: SumRecorder,
    Kind.GAUGE: GaugeRecorder,
    Kind.HISTOGRAM: HistogramRecorder,
}


class Instruments:
    """One recorder per catalog metric; bound to a meter once per process."""

    def __init__(self, specs: Iterable[MetricSpec] = catalog.METRICS, cardinality_limit: int = 2000):
        self.cardinality_limit = cardinality_limit
        self._recorders: dict[str, Recorder] = {
            spec.name: _RECORDER_CLASSES[spec.kind](spec, self) for spec in specs
        }
        self._bound = False

    @property
    def bound(self) -> bool:
        return self._bound

    def reset(self) -> None:
        """Every recorder as new and unbound, in place (modules and middleware hold them):
        the next provider binds fresh SDK instruments."""
        for recorder in self._recorders.values():
            type(recorder).__init__(recorder, recorder.spec, self)
        self._bound = False

    def after_fork(self) -> None:
        """In a forked child: see :meth:`Recorder.after_fork`."""
        for recorder in self._recorders.values():
            recorder.after_fork()

    def configure(self, settings) -> None:
        """Apply the settings the recorders follow (a :class:`~mystocks_otel.config.Settings`):
        the cardinality limit and the HTTP duration buckets. Called when the provider is
        built, before the multiprocess store sizes its entries."""
        self.cardinality_limit = settings.cardinality_limit
        self.histogram(HTTP_DURATION).set_buckets(settings.http_buckets)

    def counter(self, name: str) -> "SumRecorder":
        return self._recorders[name]  # type: ignore[return-value]

    def gauge(self, name: str) -> "GaugeRecorder":
        return self._recorders[name]  # type: ignore[return-value]

    def histogram(self, name: str) -> "HistogramRecorder":
        return self._recorders[name]  # type: ignore[return-value]

    def __getitem__(self, name: str) -> Recorder:
        return self._recorders[name]

    def __iter__(self):
        return iter(self._recorders.values())

    def clear_values(self) -> None:
        for recorder in self._recorders.values():
            recorder.clear_values()

    def enable_exemplars(self, enabled: bool = True, gate=None) -> None:
        """Keep exemplars (from the span current at record time) on :data:`EXEMPLAR_METRICS`.

        Only when tracing is on: reading the current span costs about 0.3 us a record.
        ``gate``: the tail sampler's :meth:`~mystocks_otel._internal.sampling.TailSampler.exemplar_gate`,
        so that an exemplar is only ever kept from a trace that is kept.
        """
        for name in EXEMPLAR_METRICS:
            recorder = self._recorders[name]
            recorder.exemplar_source = current_span_ids if enabled else None
            recorder.exemplar_gate = gate if enabled else None

    def bind(self, meter: Meter) -> bool:
        """Create the SDK instruments. Returns False when already bound."""
        if self._bound:
            return False
        for recorder in self._recorders.values():
            recorder.bind(meter)
        self._bound = True
        return True
