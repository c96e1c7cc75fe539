"""Memory per series: Python allocations (tracemalloc) kept after N series and one scrape.

Run by the driver as ``python -m benchmarks.memory VARIANT N``, one fresh process per
measurement (the registries are process-wide); prints one JSON line. The label values are
made before measuring, so the figure is what each library keeps per series, not the strings.
A scrape runs before the second snapshot because some exporters build state when collected
(the OTel SDK's observable instruments do); its body is dropped before the snapshot.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

from . import series

VARIANTS = ("ours", "prometheus_client", "otel_stock")


def _prepare(variant: str):
    """A function that adds the plan's series, renders once and returns ``(body, what it keeps)``."""
    if variant == "ours":
        from fastapi import FastAPI

        from mystocks_otel import setup_telemetry
        from mystocks_otel._internal import exposition

        setup_telemetry(FastAPI(), system_metrics=False)
        exposition.render(None)  # the empty registry's first scrape is not per-series cost

        def fill(plan):
            series.fill_ours(plan)
            return exposition.render(None)[0], None  # our recorders are process-wide
    elif variant == "prometheus_client":
        from prometheus_client import generate_latest

        def fill(plan):
            registry = series.prometheus_client_registry(plan)
            return generate_latest(registry), registry
    else:
        from prometheus_client import generate_latest

        def fill(plan):
            registry, provider = series.otel_stock_registry(plan)
            return generate_latest(registry), (registry, provider)
    return fill


def measure(variant: str, size: int) -> dict:
    fill = _prepare(variant)
    plan = series.plan(size)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    body, kept_alive = fill(plan)
    samples = series.sample_lines(body)
    del body
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del kept_alive
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"variant": variant, "series": size, "samples": samples,
            "bytes_per_series": kept / size}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
