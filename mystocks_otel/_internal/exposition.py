"""The ``/metrics`` body, rendered straight from our recorders: Prometheus text or OpenMetrics.

One function, :func:`render`, is what every door to ``/metrics`` calls (the app's port
and the standalone port). It returns ``None`` when the Prometheus exporter is off.

There is no SDK collection on the scrape path: the recorders already hold every series
pre-aggregated, so a scrape is a snapshot and string formatting. Names, labels, ``le``
values and ``target_info`` are those the OpenTelemetry Prometheus exporter produced from
the same data (``scope_info`` off), so dashboards and rules do not change:

- a counter ``mystocks.x.y`` with unit ``s`` is ``mystocks_x_y_seconds_total``; an
  up-down counter is a gauge (see :attr:`MetricSpec.prometheus_name`);
- label names are attribute keys with every run of other characters made ``_``; values
  are strings as given, and other types as JSON (``200``, ``true``);
- ``le`` is ``str(bound)`` (``"0.005"``, ``"1.0"``, ``"+Inf"``);
- ``target_info`` carries the resource's attributes.

Content negotiation: a scraper whose ``Accept`` prefers ``application/openmetrics-text``
(Prometheus does) gets OpenMetrics 1.0 with the latest exemplar of each histogram bucket
and ``# EOF``; anything else gets the classic text format 0.0.4 (no exemplars).

In multiprocess mode the series come from every worker's file, merged
(:mod:`mystocks_otel._internal.multiprocess`), in the same shapes.

After ours come the app's own OpenTelemetry instruments (:mod:`.app_metrics`: same naming,
their attributes as labels) and prometheus_client's default registry (:mod:`.client_registry`).
No family name is served twice: ours first, then the app's instruments, then the registry's.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterable

import logging

from . import app_meters, app_metrics, client_registry, state
from ..catalog import OVERFLOW_ATTRIBUTE, Kind, MetricSpec
from .instruments import OVERFLOW_KEY, Instruments
from .state import APP_INSTRUMENTS, INSTRUMENTS, LABEL_TEXTS

_log = logging.getLogger(__name__)

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_OPENMETRICS_VERSIONS = (None, "1.0.0", "0.0.1")
_OVERFLOW_LABEL = f'{OVERFLOW_ATTRIBUTE.replace(".", "_")}="true"'


def render(accept: str | None = None) -> tuple[bytes, str] | None:
    """``(body, content_type)`` for a scrape whose ``Accept`` header is ``accept``.

    Thread-safe; call it off the event loop for large pages (it holds each recorder's
    lock only while copying that recorder's series).
    """
    current = state.provider()
    if current is None or "prometheus" not in current.settings.metrics_exporters:
        return None
    openmetrics = wants_openmetrics(accept)
    started = time.perf_counter()
    APP_INSTRUMENTS.observe_all()  # the app's callbacks, into this worker's recorders (and file)
    app_meters.check_global(APP_INSTRUMENTS)
    store = current.multiprocess
    merged = store.merged() if store is not None else None
    found = unique([*families(INSTRUMENTS, merged), *app_families(APP_INSTRUMENTS, store, merged)])
    registry = client_registry.render(current.settings, openmetrics, taken_names(found),
                                      multiprocess=store is not None)
    body = render_families(found, current.resource.attributes, openmetrics, registry).encode()
    current.last_collection = {
        "at": time.time(),
        "duration_seconds": round(time.perf_counter() - started, 6),
        "bytes": len(body),
    }
    return body, OPENMETRICS if openmetrics else TEXT


def wants_openmetrics(accept: str | None) -> bool:
    """True when ``accept`` ranks OpenMetrics (1.0.0, 0.0.1 or unversioned) at least as
    high as the text format, as Prometheus' own Accept header does."""
    if not accept or "openmetrics" not in accept:
        return False
    best_openmetrics = best_text = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        options = dict(p.partition("=")[::2] for p in params)
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            continue
        media = media.lower()
        if media == "application/openmetrics-text":
            if options.get("version") in _OPENMETRICS_VERSIONS:
                best_openmetrics = max(best_openmetrics, quality)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, quality)
    return best_openmetrics > 0 and best_openmetrics >= best_text


# -- what to render: (spec, label names, items, exemplars) per metric -------------------------

def families(instruments: Instruments, merged: dict | None = None) -> Iterable[tuple]:
    """Per catalog metric: ``(spec, items, exemplars)``; items are ``[(key, value)]``.

    ``merged`` (multiprocess mode) maps a metric name to its merged ``(items, exemplars)``;
    otherwise the recorders' own snapshots are used.
    """
    for recorder in instruments:
        spec = recorder.spec
        if merged is not None:
            items, exemplars = merged.get(spec.name, ((), None))
        else:
            items = recorder.snapshot()
            exemplars = recorder.exemplars() if spec.kind is Kind.HISTOGRAM else None
        if items:
            yield spec, items, exemplars


def app_families(app, store, merged: dict | None) -> Iterable[tuple]:
    """The app's own instruments: this process's recorders, or every worker's (``merged``)."""
    if merged is None:
        for recorder in app:
            items = recorder.snapshot()
            if items:
                yield recorder.spec, items, None
        return
    for metric, (items, _) in merged.items():
        spec = store.app_spec(metric)
        if spec is not None and items:
            yield spec, items, None


_warned: set[str] = set()


def unique(found: list[tuple]) -> list[tuple]:
    """Families in order, a Prometheus name served once (the first wins: ours come first)."""
    seen: set[str] = set()
    out = []
    for item in found:
        name = item[0].prometheus_name
        if name in seen:
            if name not in _warned:
                _warned.add(name)
                _log.warning("mystocks-otel: the app's instrument %r maps to %s, which is already "
                             "served; it is left off /metrics", item[0].name, name)
            continue
        seen.add(name)
        out.append(item)
    return out


def taken_names(found: list[tuple]) -> set[str]:
    """Every sample and family name the families use (and the base of a counter's)."""
    names = set()
    for spec, _, _ in found:
        name = spec.prometheus_name
        base = name[:-len("_total")] if name.endswith("_total") else name
        names.update((name, base, f"{base}_total", f"{base}_created", f"{name}_bucket",
                      f"{name}_count", f"{name}_sum"))
    return names


# -- formatting -------------------------------------------------------------------------------

def _number(value) -> str:
    if type(value) is int:
        return str(value)
    if value - value == 0:  # finite
        return repr(value)
    return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        value = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _label_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def label_text(names: tuple[str, ...], key: tuple) -> str:
    """``a="x",b="y"``: the labels of one series, sorted by name, without the braces."""
    if key[:1] == OVERFLOW_KEY:  # the overflow series (with a worker label in multiprocess mode)
        extra = f',worker="{_escape_value(str(key[1]))}"' if len(key) > 1 else ""
        return _OVERFLOW_LABEL + extra
    pairs = sorted((name, value) for name, value in zip(names, key) if value is not None)
    return ",".join(f'{name}="{_escape_value(_label_value(value))}"' for name, value in pairs)


def _names(spec: MetricSpec) -> tuple[str, ...]:
    # multiprocess mode appends the worker to the keys of per-worker gauges
    return tuple(lbl.prometheus_name for lbl in spec.labels) + ("worker",)


def app_label_text(key: tuple) -> str:
    """An app series' labels: its flat ``(name, value, ...)`` key, then the worker's slot when
    multiprocess mode added one (an odd length)."""
    if key[:1] == OVERFLOW_KEY:
        return label_text((), key)
    pairs = [(_sanitize(str(name)), value) for name, value in zip(key[0::2], key[1::2])]
    if len(key) % 2:
        pairs.append(("worker", str(key[-1])))
    return ",".join(f'{name}="{_escape_value(_label_value(value))}"'
                    for name, value in sorted(pairs, key=lambda pair: pair[0]))


def _texts(spec: MetricSpec, items) -> list[str]:
    cache = LABEL_TEXTS.setdefault(spec.name, {})
    if isinstance(spec, app_metrics.AppSpec):
        make = app_label_text
    else:
        names = _names(spec)

        def make(key):
            return label_text(names, key)
    texts = []
    for key, _ in items:
        text = cache.get(key)
        if text is None:
            text = cache[key] = make(key)
        texts.append(text)
    return texts


def _exemplar(kept) -> str:
    trace_id, span_id, value, at = kept
    return f' # {{trace_id="{trace_id:032x}",span_id="{span_id:016x}"}} {_number(value)} {at:.3f}'


def _histogram_lines(out: list, name: str, spec_bounds, items, texts, exemplars, openmetrics):
    les = [str(b) for b in spec_bounds] + ["+Inf"]
    width = len(les)
    exemplars = exemplars if openmetrics and exemplars else {}
    for (key, series), text in zip(items, texts):
        opening = f"{name}_bucket{{{text}," if text else f"{name}_bucket{{"
        labels = f"{{{text}}}" if text else ""
        kept = exemplars.get(key)
        cumulative = 0
        for i in range(width):
            cumulative += series[i]
            line = f'{opening}le="{les[i]}"}} {cumulative}'
            if kept is not None and kept[i] is not None:
                line += _exemplar(kept[i])
            out.append(line)
        out.append(f"{name}_count{labels} {cumulative}")
        out.append(f"{name}_sum{labels} {_number(series[width])}")


def render_families(found: Iterable[tuple], resource_attributes, openmetrics: bool = False,
                    extra: str = "") -> str:
    """The page: ``target_info``, the families in ``found``, then ``extra`` (already formatted
    families, e.g. prometheus_client's), then ``# EOF`` for OpenMetrics."""
    out: list[str] = []
    _target_info(out, resource_attributes, openmetrics)
    for spec, items, exemplars in found:
        name = spec.prometheus_name
        kind = spec.prometheus_type
        family = name[:-len("_total")] if openmetrics and kind == "counter" else name
        out.append(f"# HELP {family} {_escape_help(spec.description, openmetrics)}")
        out.append(f"# TYPE {family} {kind}")
        texts = _texts(spec, items)
        if kind == "histogram":
            _histogram_lines(out, name, [float(b) for b in spec.buckets or ()], items, texts,
                             exemplars, openmetrics)
            continue
        for (_, value), text in zip(items, texts):
            out.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    if extra:
        out.append(extra.rstrip("\n"))
    if openmetrics:
        out.append("# EOF")
    out.append("")
    return "\n".join(out)


def _target_info(out: list, attributes, openmetrics: bool) -> None:
    if not attributes:
        return
    names = tuple(_sanitize(k) for k in attributes)
    text = label_text(names, tuple(attributes.values()))
    if openmetrics:
        out += ["# HELP target Target metadata", "# TYPE target info", f"target_info{{{text}}} 1"]
    else:
        out += ["# HELP target_info Target metadata", "# TYPE target_info gauge",
                f"target_info{{{text}}} 1.0"]


def _sanitize(key: str) -> str:
    """The OTel exporter's attribute-key rule (leading digit becomes ``_``)."""
    key = "_" + key[1:] if key and key[0].isdigit() else key
    return re.sub(r"[^a-zA-Z0-9]+", "_", key)

