"""The application's own OpenTelemetry instruments: on ``/metrics``, over OTLP, exact across workers.

With ``MYSTOCKS_OTEL_GLOBAL_METER_PROVIDER`` on (the default) and no other SDK's provider set
first, set-up points the API's global placeholder at :class:`.app_meters.AppMeterProvider`
(:func:`.app_meters.install_global` says how, and why the global itself stays settable). Then anything the
app or a library creates through the API (``metrics.get_meter("myapp").create_counter(...)``),
after set-up or before it (the API's placeholder instruments get real ones at set-up), records
into a recorder like ours (:mod:`.instruments`): pre-aggregated, bounded by
``MYSTOCKS_OTEL_CARDINALITY_LIMIT`` series per instrument plus one ``otel.metric.overflow=true``
series (counted in ``mystocks.telemetry.sanitized_attributes``), NaN/infinite/negative counter
values dropped and counted. Nothing raises into the app: a measurement that fails (attributes
that cannot be keyed) and an observable callback that raises are dropped and counted in
``mystocks.telemetry.dropped_measurements{reason="error"}``; an app that makes instruments,
meters or callbacks in a loop is bounded too (:data:`MAX_INSTRUMENTS`, :data:`MAX_CALLBACKS`).
So the app's instruments take every path ours take:

- ``/metrics`` (every door): the OTel Prometheus exporter's naming (unit suffix, ``_total``),
  ``# HELP`` from the description;
- multiprocess mode: mirrored into this worker's file at record time, with a descriptor entry
  (name, kind, unit, description, buckets), so any worker renders instruments another one made.
  Counters, histograms and (synchronous) up-down counters add up over every worker of the run,
  dead ones included; gauges are one series per live worker (``worker`` label, a reused slot);
  observable counters add up each worker's last observation (dead ones included); observable
  up-down counters add up the live workers' last observation;
- OTLP: the SDK observes the sums and gauges (instruments on a meter of the app's own scope),
  histograms join the export (:mod:`.sdk_bridge`), with their unit and description.

Observable instruments' callbacks run when this worker answers a scrape, at each OTLP collection,
and on the poller's interval (so other workers' scrapes see values at most one probe interval old).

An instrument named like one of ours (the catalog), e.g. FastAPI's native
``http.server.request.duration``, is a no-op: HTTP metrics are measured once, by our layer
(:mod:`.native_telemetry`). A second instrument with an existing name and another kind is a
no-op too, with one warning.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from opentelemetry.metrics import CallbackOptions

from . import server_log
from ..catalog import PER_WORKER, SUM, Kind, MetricSpec
from .instruments import (OVERFLOW_KEY, SANITIZED, GaugeRecorder, HistogramRecorder, Instruments,
                          SumRecorder)

_log = logging.getLogger(__name__)

#: The SDK's default explicit buckets (for an app histogram with no advisory boundaries).
SDK_DEFAULT_BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
                      2500.0, 5000.0, 7500.0, 10000.0)
_MAX = sys.float_info.max
#: UCUM units as the OpenTelemetry Prometheus exporter spells them in a family name
UNIT_SUFFIXES = {
    "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
    "min": "minutes", "h": "hours", "d": "days", "By": "bytes", "KiBy": "kibibytes",
    "MiBy": "mebibytes", "GiBy": "gibibytes", "KBy": "kilobytes", "MBy": "megabytes",
    "GBy": "gigabytes", "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts",
    "g": "grams", "Cel": "celsius", "Hz": "hertz", "%": "percent", "1": "",
}
META = "\0meta"  # the file entry describing one app instrument (multiprocess mode)
_NAME = re.compile(r"[a-zA-Z][-_./a-zA-Z0-9]{0,254}")

COUNTER, UPDOWN, HISTOGRAM, GAUGE = "counter", "updowncounter", "histogram", "gauge"
OBS_COUNTER, OBS_UPDOWN, OBS_GAUGE = "observable_counter", "observable_updowncounter", "observable_gauge"
#: instrument -> (how its values are stored and merged, merge rule)
STORAGE = {
    COUNTER: (Kind.COUNTER, SUM),        # a total; every worker, dead ones included
    UPDOWN: (Kind.COUNTER, SUM),         # a total that may go down; every worker, dead included
    HISTOGRAM: (Kind.HISTOGRAM, None),   # bucket by bucket; every worker, dead included
    GAUGE: (Kind.GAUGE, PER_WORKER),     # one series per live worker
    OBS_COUNTER: (Kind.COUNTER, SUM),    # each worker's last observation, dead included
    OBS_UPDOWN: (Kind.GAUGE, SUM),       # the live workers' last observations, added
    OBS_GAUGE: (Kind.GAUGE, PER_WORKER),
}
_PROMETHEUS_TYPES = {COUNTER: "counter", OBS_COUNTER: "counter", HISTOGRAM: "histogram"}
#: Memory bounds against an app that makes instruments in a loop: instruments in all (past it a
#: new name records nothing, one warning), callbacks per observable instrument (past it a new
#: one is ignored, one warning), distinct one-time warnings remembered (past it, no more).
MAX_INSTRUMENTS = 1_000
MAX_CALLBACKS = 64
MAX_WARNINGS = 1_000


@dataclass(frozen=True)
class AppSpec(MetricSpec):
    """An app instrument, described as a catalog entry is: ``kind`` is how it is stored."""

    instrument: str = COUNTER
    scope: tuple = ("", "", "")  # meter name, version, schema URL

    @property
    def prometheus_type(self) -> str:
        return _PROMETHEUS_TYPES.get(self.instrument, "gauge")

    @property
    def prometheus_name(self) -> str:
        base = re.sub(r"[^a-zA-Z0-9:]+", "_", self.name)
        suffix = unit_suffix(self.unit)
        if suffix and not base.endswith("_" + suffix):
            base = f"{base}_{suffix}"
        if self.prometheus_type == "counter" and not base.endswith("_total"):
            base += "_total"
        return base

    def meta(self) -> tuple:
        """The descriptor written once per worker file (JSON-able, flat)."""
        return (self.name, self.instrument, self.unit, self.description,
                list(self.buckets or ()), list(self.scope))

    @classmethod
    def make(cls, name: str, instrument: str, unit: str, description: str,
             buckets: Sequence[float] | None = None, scope: Sequence = ("", "", "")) -> "AppSpec":
        kind, rule = STORAGE[instrument]
        return cls(name=name, kind=kind, unit=unit or "", description=description or "",
                   labels=(), priority="P3", domain="app",
                   buckets=tuple(float(b) for b in buckets) if buckets else None,
                   multiprocess=rule, instrument=instrument, scope=tuple(scope))

    @classmethod
    def from_meta(cls, meta: Sequence) -> "AppSpec | None":
        try:
            name, instrument, unit, description, buckets, scope = meta
            if instrument not in STORAGE or not isinstance(name, str):
                return None
            return cls.make(name, instrument, unit, description, buckets or None, scope)
        except (TypeError, ValueError):
            return None


def unit_suffix(unit: str) -> str:
    """``s`` -> ``seconds``, ``By/s`` -> ``bytes_per_second``, ``{widget}`` -> ``""``."""
    unit = re.sub(r"\{.*?\}", "", unit or "")
    per = ""
    if "/" in unit:
        unit, _, per = unit.partition("/")
        per = UNIT_SUFFIXES.get(per, per)
        per = {"seconds": "second", "minutes": "minute", "hours": "hour", "days": "day"}.get(per, per)
    text = UNIT_SUFFIXES.get(unit, unit) + (f"_per_{per}" if per else "")
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_")


def _value(value):
    """An attribute value as a key part: primitives as they are, sequences as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)


def flat_key(attributes) -> tuple:
    """``{"b": 1, "a": "x"}`` -> ``("a", "x", "b", 1)``: hashable, sorted, JSON round-trips."""
    if not attributes:
        return ()
    out = []
    for key in sorted(attributes):
        out += (str(key), _value(attributes[key]))
    return tuple(out)


def attributes_of_key(key: tuple) -> dict:
    return dict(zip(key[0::2], key[1::2]))


class _AppKeys:
    """Mixed into a recorder: attributes are any dict (as a flat key), bounded by the limit."""

    def _admit(self, values: tuple) -> tuple:
        key = tuple(_value(v) for v in values)
        with self._lock:
            if key not in self._attributes:
                if len(self._attributes) >= self._instruments.cardinality_limit:
                    self._report(SANITIZED, "overflow")
                    return OVERFLOW_KEY
                self._attributes[key] = attributes_of_key(key)
            if len(self._clean) < 2 * self._instruments.cardinality_limit:
                self._clean[values] = key
        return key


class AppSum(_AppKeys, SumRecorder):
    def __init__(self, spec: AppSpec, instruments: Instruments):
        super().__init__(spec, instruments)
        if spec.instrument == UPDOWN:
            self._minimum = -_MAX
        self.app_callbacks: list = []

    def bind(self, meter) -> None:
        create = (meter.create_observable_counter if self.spec.instrument in (COUNTER, OBS_COUNTER)
                  else meter.create_observable_up_down_counter)
        create(self.spec.name, [self.observe_now], self.spec.unit, self.spec.description)

    def observe_now(self, options=None):
        """For the SDK: the app's callbacks first (observable instruments), then the values."""
        if self.app_callbacks:
            run_callbacks(self)
        return self.observe(options)


class AppGauge(_AppKeys, GaugeRecorder):
    def __init__(self, spec: AppSpec, instruments: Instruments):
        super().__init__(spec, instruments)
        self.app_callbacks: list = []

    def bind(self, meter) -> None:
        create = (meter.create_observable_up_down_counter if self.spec.instrument == OBS_UPDOWN
                  else meter.create_observable_gauge)
        create(self.spec.name, [self.observe_now], self.spec.unit, self.spec.description)

    observe_now = AppSum.observe_now


class AppHistogram(_AppKeys, HistogramRecorder):
    app_callbacks: tuple = ()  # histograms are never observable: no callbacks, none shared

    def bind(self, meter) -> None:
        """Histograms join the OTLP export in :mod:`.sdk_bridge`."""


_RECORDERS = {Kind.COUNTER: AppSum, Kind.GAUGE: AppGauge, Kind.HISTOGRAM: AppHistogram}


class AppInstruments:
    """The app's recorders by name: made on demand, mirrored and bound as they come."""

    def __init__(self, instruments: Instruments):
        self.instruments = instruments  # the catalog's: its limit and its drop counters
        self._recorders: dict[str, object] = {}
        self._lock = threading.RLock()
        self.sink = None  # this worker's multiprocess file, once the store started
        self.meter_for: Callable | None = None  # scope -> SDK meter, once the provider is built
        self._warned: set[str] = set()

    def __iter__(self):
        return iter(list(self._recorders.values()))

    def __len__(self) -> int:
        return len(self._recorders)

    def get(self, name: str):
        return self._recorders.get(name.lower())

    def recorder(self, spec: AppSpec):
        """The recorder for ``spec``: new, the existing one (same kind), or None (a conflict)."""
        with self._lock:
            found = self._recorders.get(spec.name.lower())
            if found is not None:
                if found.spec.instrument == spec.instrument:
                    return found
                self.warn_once(spec.name, f"mystocks-otel: instrument {spec.name!r} exists as a "
                               f"{found.spec.instrument}; this {spec.instrument} records nothing")
                return None
            if len(self._recorders) >= MAX_INSTRUMENTS:
                self.warn_once("\0instruments", f"mystocks-otel: the app made {MAX_INSTRUMENTS} "
                               f"instruments; {spec.name!r} and later new ones record nothing")
                return None
            made = _RECORDERS[spec.kind](spec, self.instruments)
            self._recorders[spec.name.lower()] = made
            if self.sink is not None:
                self.sink.describe(spec)
                self.sink.attach(made)
            if self.meter_for is not None:
                self._bind(made)
            return made

    def _bind(self, recorder) -> None:
        try:
            recorder.bind(self.meter_for(recorder.spec.scope))
        except Exception:  # noqa: BLE001 - OTLP loses this one instrument, /metrics keeps it
            _log.warning("mystocks-otel: %s not exported over OTLP", recorder.spec.name, exc_info=True)

    def bind_all(self, meter_for: Callable) -> None:
        with self._lock:
            self.meter_for = meter_for
            for recorder in self:
                self._bind(recorder)

    def attach(self, sink) -> None:
        """Mirror every recorder (now and later) into ``sink``, a worker's file."""
        with self._lock:
            self.sink = sink
            for recorder in self:
                sink.describe(recorder.spec)
                sink.write_recorder(recorder)
                sink.attach(recorder)

    def after_fork(self) -> None:
        """In a forked child: a new lock (a parent thread may have held this one), no sink (the
        parent's file), and each recorder's counts forgotten (see Recorder.after_fork)."""
        self._lock = threading.RLock()
        with self._lock:
            self.sink = None
            for recorder in self:
                recorder.after_fork()

    def reset(self) -> None:
        """Forget every instrument (tests; the global provider stays set)."""
        with self._lock:
            self._recorders.clear()
            self.sink = None
            self.meter_for = None

    def warn_once(self, name: str, message: str, level: int = logging.WARNING) -> None:
        if name not in self._warned and len(self._warned) < MAX_WARNINGS:
            self._warned.add(name)
            server_log.log(level, message, _log)

    def add_callbacks(self, recorder, callbacks) -> None:
        """An observable instrument's callbacks, for ``recorder`` to run (bounded, no repeats)."""
        with self._lock:
            for callback in callbacks or ():
                if any(callback is known for known in recorder.app_callbacks):
                    continue
                if len(recorder.app_callbacks) >= MAX_CALLBACKS:
                    self.warn_once(f"\0callbacks/{recorder.spec.name}", (
                        f"mystocks-otel: instrument {recorder.spec.name!r} has {MAX_CALLBACKS} "
                        "callbacks; later ones are ignored"))
                    return
                recorder.app_callbacks.append(callback)

    def observe_all(self) -> None:
        """Run every observable instrument's callbacks into its recorder."""
        for recorder in self:
            if recorder.app_callbacks:
                run_callbacks(recorder)


def run_callbacks(recorder) -> None:
    """An observable instrument's callbacks, their observations stored in its recorder."""
    options = CallbackOptions()
    for callback in list(recorder.app_callbacks):
        try:
            if hasattr(callback, "send"):  # a generator callback
                observations = callback.send(options)
            else:
                observations = callback(options)
            for observation in observations or ():
                key = flat_key(observation.attributes)
                if isinstance(recorder, AppSum):
                    recorder.set_total(observation.value, *key)
                else:
                    recorder.set(observation.value, *key)
        except Exception:  # noqa: BLE001 - an app's callback must not break a scrape
            recorder._error()  # logged (debug) and counted in dropped_measurements{reason=error}
