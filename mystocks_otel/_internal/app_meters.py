"""The OpenTelemetry metrics API, answered by mystocks-otel: provider, meters and instruments.

:func:`install_global` points the API's global placeholder at :class:`AppMeterProvider` at
set-up; every meter it gives records into :class:`.app_metrics.AppInstruments` (see that module
for where the values go). Our synchronous instruments keep the placeholder's semantics: a
provider set globally later takes their measurements over (:class:`_Sync`).
"""

from __future__ import annotations

import logging
import sys
import threading

from opentelemetry import metrics as api
from opentelemetry.metrics import NoOpMeter
from opentelemetry.metrics import _internal as _api_state  # is a global provider set (API 1.45)

from .. import catalog
from .app_metrics import (COUNTER, GAUGE, HISTOGRAM, MAX_INSTRUMENTS, OBS_COUNTER, OBS_GAUGE,
                          OBS_UPDOWN, SDK_DEFAULT_BOUNDS, UPDOWN, AppInstruments, AppSpec,
                          flat_key)

_MAX = sys.float_info.max
_CATALOG = frozenset(spec.name.lower() for spec in catalog.METRICS)


class _Sync:
    """A synchronous instrument of ours, with the API's placeholder semantics: when another
    provider is set globally later (``metrics.set_meter_provider``: the app's, logfire's,
    FastAPI's ``auto_configure``), its measurements go to a twin made on that provider, as the
    API's own placeholder instruments would. ``recorder`` None: a no-op until then (one of our
    names, e.g. FastAPI's native ``http.server.request.duration``)."""

    _create = ""  # the Meter method that makes the twin
    _method = ""  # the instrument's (and its recorder's) method: add, record or set

    def __init__(self, name, unit, description, recorder, scope=("", "", ""), advisory=None):
        super().__init__(name, unit, description)
        self._name, self._unit, self._description = name, unit, description
        self._recorder = recorder
        self._scope = scope
        self._advisory = advisory
        self._twin = None  # (provider, its instrument)

    def _moved(self):
        """The twin on the provider set globally since, or None while there is none."""
        other = _api_state._METER_PROVIDER
        if other is None:
            return None
        twin = self._twin
        if twin is None or twin[0] is not other:
            try:
                meter = other.get_meter(self._scope[0], self._scope[1] or None, self._scope[2] or None)
                create = getattr(meter, self._create)
                made = (create(self._name, self._unit, self._description,
                               explicit_bucket_boundaries_advisory=self._advisory)
                        if self._create == "create_histogram"
                        else create(self._name, self._unit, self._description))
            except Exception:  # noqa: BLE001 - never raise into the app
                made = None
            twin = self._twin = (other, made)
        return twin[1]

    def _measure(self, amount, attributes, context) -> None:
        """One measurement: to the twin once another provider is set, else to our recorder.
        Never raises into the app: a measurement that fails (attributes that cannot be keyed,
        say) is dropped and counted (``mystocks.telemetry.dropped_measurements``)."""
        try:
            if _api_state._METER_PROVIDER is not None:
                moved = self._moved()
                if moved is not None:
                    getattr(moved, self._method)(amount, attributes, context)
            elif self._recorder is not None:
                getattr(self._recorder, self._method)(amount, *flat_key(attributes))
        except Exception:  # noqa: BLE001 - never raise into the app
            if self._recorder is not None:
                self._recorder._error()


class AppCounter(_Sync, api.Counter):
    _create, _method = "create_counter", "add"

    def add(self, amount, attributes=None, context=None) -> None:
        self._measure(amount, attributes, context)


class AppUpDownCounter(_Sync, api.UpDownCounter):
    _create, _method = "create_up_down_counter", "add"

    def add(self, amount, attributes=None, context=None) -> None:
        self._measure(amount, attributes, context)


class AppHistogramInstrument(_Sync, api.Histogram):
    _create, _method = "create_histogram", "record"

    def record(self, amount, attributes=None, context=None) -> None:
        self._measure(amount, attributes, context)


class AppGaugeInstrument(_Sync, api._Gauge):
    _create, _method = "create_gauge", "set"

    def set(self, amount, attributes=None, context=None) -> None:
        self._measure(amount, attributes, context)


class _Observable:
    """An observable instrument of ours: its callbacks feed its recorder (they stay with us
    when another provider is set later)."""

    def __init__(self, name, callbacks, unit, description, recorder, registry):
        super().__init__(name, callbacks, unit, description)
        self._recorder = recorder
        registry.add_callbacks(recorder, callbacks)


class AppObservableCounter(_Observable, api.ObservableCounter):
    _noop = "create_observable_counter"  # the NoOpMeter method for when ours records nothing


class AppObservableUpDownCounter(_Observable, api.ObservableUpDownCounter):
    _noop = "create_observable_up_down_counter"


class AppObservableGauge(_Observable, api.ObservableGauge):
    _noop = "create_observable_gauge"


class AppMeter(api.Meter):
    """A meter whose instruments record into :class:`AppInstruments`."""

    def __init__(self, registry: AppInstruments, name: str, version: str | None = None,
                 schema_url: str | None = None, attributes=None):
        super().__init__(name, version=version, schema_url=schema_url)
        self._registry = registry
        self._noop = NoOpMeter(name, version=version, schema_url=schema_url)

    def _recorder(self, name, instrument, unit, description, buckets=None):
        """Our recorder for a new instrument, or None: it records nothing (one warning)."""
        try:
            checked = api.Instrument._check_name_unit_description(name, unit, description)
        except TypeError:  # a name, unit or description that is not text
            checked = {"name": None}
        if checked["name"] is None or checked["unit"] is None:
            self._registry.warn_once(str(name), f"mystocks-otel: instrument {name!r} (unit "
                                     f"{unit!r}) has an invalid name or unit; it records nothing")
            return None
        if name.lower() in _CATALOG:
            # FastAPI's native HTTP metrics, or an app reusing one of our names: ours are kept
            fastapi = self.name == "fastapi"
            self._registry.warn_once(f"{self.name}/{name}", (
                f"mystocks-otel: {self.name}'s instrument {name!r} is one of ours; it records "
                "nothing (our layer measures it once)"), logging.DEBUG if fastapi else logging.WARNING)
            return None
        return self._registry.recorder(AppSpec.make(name, instrument, checked["unit"],
                                                    checked["description"], buckets, self._scope()))

    def _scope(self) -> tuple:
        return (self.name, self.version or "", self.schema_url or "")

    def create_counter(self, name, unit="", description=""):
        found = self._recorder(name, COUNTER, unit, description)
        return AppCounter(name, unit, description, found, self._scope())

    def create_up_down_counter(self, name, unit="", description=""):
        found = self._recorder(name, UPDOWN, unit, description)
        return AppUpDownCounter(name, unit, description, found, self._scope())

    def create_histogram(self, name, unit="", description="", *,
                         explicit_bucket_boundaries_advisory=None):
        bounds = _bounds(explicit_bucket_boundaries_advisory)
        found = self._recorder(name, HISTOGRAM, unit, description, bounds)
        return AppHistogramInstrument(name, unit, description, found, self._scope(),
                                      explicit_bucket_boundaries_advisory)

    def create_gauge(self, name, unit="", description=""):
        found = self._recorder(name, GAUGE, unit, description)
        return AppGaugeInstrument(name, unit, description, found, self._scope())

    def _observable(self, cls, instrument, name, callbacks, unit, description):
        found = self._recorder(name, instrument, unit, description)
        if found is None:  # one of our names, or a conflict: the API's no-op
            return getattr(self._noop, cls._noop)(name, callbacks, unit, description)
        return cls(name, callbacks, unit, description, found, self._registry)

    def create_observable_counter(self, name, callbacks=None, unit="", description=""):
        return self._observable(AppObservableCounter, OBS_COUNTER, name, callbacks, unit,
                                description)

    def create_observable_up_down_counter(self, name, callbacks=None, unit="", description=""):
        return self._observable(AppObservableUpDownCounter, OBS_UPDOWN, name, callbacks, unit,
                                description)

    def create_observable_gauge(self, name, callbacks=None, unit="", description=""):
        return self._observable(AppObservableGauge, OBS_GAUGE, name, callbacks, unit,
                                description)


def _bounds(advisory) -> tuple[float, ...]:
    """The advisory boundaries when valid (finite, strictly increasing), else the SDK's default."""
    try:
        bounds = tuple(float(b) for b in advisory) if advisory is not None else ()
    except (TypeError, ValueError):
        bounds = ()
    if bounds and all(a < b for a, b in zip(bounds, bounds[1:])) and all(
            -_MAX <= b <= _MAX for b in bounds):
        return bounds
    return SDK_DEFAULT_BOUNDS


class AppMeterProvider(api.MeterProvider):
    """The global MeterProvider mystocks-otel sets (see the module docstring).

    ``add_metric_reader``, ``force_flush`` and ``shutdown`` reach the SDK provider behind it
    (FastAPI's ``auto_configure`` adds its OTLP reader that way); ``shutdown`` from anyone but
    mystocks-otel is ignored, since the provider is the process's.
    """

    def __init__(self, registry: AppInstruments, sdk_provider=None):
        self._registry = registry
        self._sdk = sdk_provider
        self._meters: dict[tuple, AppMeter] = {}
        self._lock = threading.Lock()

    def get_meter(self, name, version=None, schema_url=None, attributes=None):
        key = (name or "", version or "", schema_url or "")
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = AppMeter(self._registry, name or "", version, schema_url, attributes)
                if len(self._meters) < MAX_INSTRUMENTS:  # past it: a meter not kept (bounded)
                    self._meters[key] = meter
        return meter

    def add_metric_reader(self, reader) -> None:
        if self._sdk is None:
            raise AttributeError("no SDK provider")
        self._sdk.add_metric_reader(reader)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._sdk.force_flush(timeout_millis) if self._sdk is not None else True

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Not the app's to stop: mystocks-otel shuts its provider down itself."""


def is_ours(provider) -> bool:
    """True for our provider, and for the API's placeholder while it forwards to ours."""
    if isinstance(provider, AppMeterProvider):
        return True
    return _deferred(provider) and isinstance(getattr(provider, "_real_meter_provider", None),
                                              AppMeterProvider)


def install_global(registry: AppInstruments, sdk_provider, settings) -> str:
    """Give the app's meters ours, when the settings want it and no other provider is set.

    **How:** the API's placeholder provider (what ``metrics.get_meter`` and
    ``get_meter_provider`` answer before anyone calls ``set_meter_provider``) forwards to
    :class:`AppMeterProvider`, exactly as it does when a provider is set: meters and
    instruments made earlier get real ones, later ``get_meter`` calls get ours. The global
    stays *unset*: a later ``metrics.set_meter_provider(...)`` (the app's, logfire's,
    FastAPI's ``auto_configure``) still works and takes over (see :func:`check_global`);
    FastAPI's native telemetry, which starts only for a configured provider, stays off, so
    HTTP metrics stay ours and counted once.

    Returns ``set``, ``ours`` (already), ``other`` (another provider kept; one warning) or ``off``.
    """
    if not settings.global_meter_provider:
        return "off"
    from opentelemetry.metrics import _internal as api_internal

    current = api.get_meter_provider()
    if isinstance(current, AppMeterProvider):
        current._sdk = sdk_provider
        return "ours"
    if _deferred(current) and current is api_internal._PROXY_METER_PROVIDER:
        forwarded = getattr(current, "_real_meter_provider", None)
        if isinstance(forwarded, AppMeterProvider):
            forwarded._sdk = sdk_provider
            return "ours"
        if forwarded is None:
            current.on_set_meter_provider(AppMeterProvider(registry, sdk_provider))
            return "set"
    registry.warn_once("\0global", (
        f"mystocks-otel: another MeterProvider ({type(current).__module__}."
        f"{type(current).__qualname__}) was set first and is kept: the app's own OpenTelemetry "
        "instruments go to it, not to /metrics or mystocks-otel's OTLP export"))
    return "other"


def check_global(registry: AppInstruments) -> None:
    """Say once when another provider was set globally after set-up: synchronous instruments
    then record to it (:class:`_Sync`), observable ones stay with us."""
    current = api.get_meter_provider()
    if registry.meter_for is None or is_ours(current) or "\0global" in registry._warned:
        return
    if not _deferred(current):
        registry.warn_once("\0global", (
            f"mystocks-otel: a MeterProvider ({type(current).__module__}."
            f"{type(current).__qualname__}) was set after set-up: the app's OpenTelemetry "
            "instruments record to it from now on, as the API's placeholders do (observable "
            "instruments stay on /metrics)"))


def _deferred(provider) -> bool:
    """The API's placeholder provider (nobody set one yet)."""
    return type(provider).__name__ == "_ProxyMeterProvider"
