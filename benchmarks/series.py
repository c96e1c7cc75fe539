"""The same N counter series, made from the catalog, for every exporter under comparison.

A series plan is a list of ``(spec, values)``: catalog counters that have at least one label
the producer bounds (a route, a table, a namespace), filled metric by metric. Each metric gets
at most :data:`PER_METRIC` series, so neither our cardinality limit nor the SDK's default
(2,000 attribute sets per metric) folds any of them into an overflow series.
"""

from __future__ import annotations

import itertools

from mystocks_otel import catalog
from mystocks_otel.catalog import Kind

PER_METRIC = 2_000


def _fillable(spec) -> bool:
    return spec.kind is Kind.COUNTER and any(lbl.values is None for lbl in spec.labels)


def _combinations(spec, count: int) -> list[tuple]:
    """``count`` distinct value tuples: bounded labels take their own values, the others v0, v1..."""
    bounded = [sorted(lbl.values) for lbl in spec.labels if lbl.values is not None]
    free = sum(1 for lbl in spec.labels if lbl.values is None)
    result = []
    for index in itertools.count():
        for fixed in itertools.product(*bounded):
            if len(result) == count:
                return result
            fixed_iter = iter(fixed)
            result.append(tuple(
                next(fixed_iter) if lbl.values is not None else f"v{index}_{position}"
                for position, lbl in enumerate(spec.labels)
            ))
        if not free:
            return result  # cannot happen for a fillable spec; guards an endless loop
    return result


def plan(total: int) -> list[tuple[object, list[tuple]]]:
    """``[(spec, [values, ...]), ...]`` holding ``total`` series in all."""
    result = []
    left = total
    for spec in filter(_fillable, catalog.METRICS):
        if left <= 0:
            break
        take = min(left, PER_METRIC)
        result.append((spec, _combinations(spec, take)))
        left -= take
    if left > 0:
        raise ValueError(f"the catalog's counters hold only {total - left} benchmark series")
    return result


def fill_ours(series_plan) -> None:
    """Record one increment per series through our recorders (the public recording path)."""
    from mystocks_otel._internal import state as instruments  # the recorders live in the process state

    for spec, rows in series_plan:
        recorder = instruments.counter(spec.name)
        for values in rows:
            recorder.add(1, *values)


def prometheus_client_registry(series_plan, created: bool = False):
    """A fresh prometheus_client registry with the same families and series."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter

    if not created:
        prometheus_client.disable_created_metrics()
    registry = CollectorRegistry()
    for spec, rows in series_plan:
        name = spec.prometheus_name.removesuffix("_total")
        family = Counter(name, spec.description, [lbl.prometheus_name for lbl in spec.labels],
                         registry=registry)
        for values in rows:
            family.labels(*values).inc()
    return registry


def otel_stock_registry(series_plan):
    """The stock OTel path: SDK counters read by ``PrometheusMetricReader`` (its defaults)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    meter = provider.get_meter("bench")
    for spec, rows in series_plan:
        counter = meter.create_counter(spec.name, spec.unit, spec.description)
        keys = spec.attribute_keys
        for values in rows:
            counter.add(1, dict(zip(keys, values)))
    return registry, provider


def sample_lines(body: bytes) -> int:
    """Samples in a text exposition (lines that are neither comments nor blank)."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
