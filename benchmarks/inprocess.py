"""One benchmark process: direct-ASGI requests, record calls and /metrics renders.

Run by the driver as ``python -m benchmarks.inprocess '<json settings>'``; prints one JSON line.
Inside the process every variant of a row is measured once per round, in a rotating order,
so drift (another job starting, the CPU clocking down) hits all variants alike. Each row
reports per-round paired numbers; the driver takes the median per process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
import timeit

from . import apps, series


def _rotations(names, rounds):
    """Round r measures the variants starting at index r, so none is always first."""
    names = list(names)
    for r in range(rounds):
        shift = r % len(names)
        yield names[shift:] + names[:shift]


# -- direct ASGI ----------------------------------------------------------------------------------

def _scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}


async def _requests(app, count: int) -> float:
    """Seconds per request for ``count`` sequential ``GET /ping`` calls."""
    template = _scope("/ping")
    status = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(template), receive, send)
    elapsed = time.perf_counter() - started
    if set(status) != {200}:
        raise RuntimeError(f"GET /ping answered {sorted(set(status))}")
    return elapsed / count


def asgi_rounds(rounds: int, count: int) -> dict[str, list[float]]:
    """Per-request microseconds, one value per round, for every variant."""
    built = {variant: apps.build(variant) for variant in apps.ASGI_VARIANTS}
    results: dict[str, list[float]] = {variant: [] for variant in built}

    async def main():
        for app in built.values():
            await _requests(app, max(50, count // 4))  # warm-up: imports, caches, first series
        for order in _rotations(built, rounds):
            for variant in order:
                gc.collect()
                results[variant].append(await _requests(built[variant], count) * 1e6)

    asyncio.run(main())
    return results


# -- record calls -----------------------------------------------------------------------------------

def _record_calls() -> dict:
    """One callable per variant. Ours goes through the catalog recorders (set-up already ran)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from mystocks_otel import catalog
    from mystocks_otel._internal import state as instruments  # the recorders live in the process state

    duration = catalog.get("http.server.request.duration")
    ours_histogram = instruments.histogram(duration.name)
    ours_counter = instruments.counter("mystocks.trading.orders")

    registry = CollectorRegistry()
    prom_histogram = Histogram("bench_duration_seconds", "d", ["method", "route", "status"],
                               buckets=duration.buckets, registry=registry)
    prom_counter = Counter("bench_orders", "o", ["side", "type", "status"], registry=registry)
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    sdk_histogram = meter.create_histogram("bench.duration", "s",
                                           explicit_bucket_boundaries_advisory=list(duration.buckets))
    attributes = {"http.request.method": "GET", "http.route": "/bench",
                  "http.response.status_code": 200}
    return {
        "ours_histogram": lambda: ours_histogram.record(0.0123, "GET", "/bench", 200),
        "prom_histogram": lambda: prom_histogram.labels("GET", "/bench", 200).observe(0.0123),
        "sdk_histogram": lambda: sdk_histogram.record(0.0123, attributes),
        "ours_counter": lambda: ours_counter.add(1, "buy", "limit", "filled"),
        "prom_counter": lambda: prom_counter.labels("buy", "limit", "filled").inc(),
    }


def record_rounds(rounds: int, number: int) -> dict[str, list[float]]:
    """Microseconds per call, one value per round, for every variant."""
    calls = _record_calls()
    for call in calls.values():
        call()
    results: dict[str, list[float]] = {name: [] for name in calls}
    for order in _rotations(calls, rounds):
        for name in order:
            results[name].append(timeit.timeit(calls[name], number=number) / number * 1e6)
    return results


# -- /metrics render --------------------------------------------------------------------------------

def _ours_render() -> bytes:
    from mystocks_otel._internal import exposition

    rendered = exposition.render(None)
    if rendered is None:
        raise RuntimeError("mystocks-otel has no Prometheus exposition (OTEL_METRICS_EXPORTER?)")
    return rendered[0]


def render_rounds(size: int, rounds: int) -> dict:
    """Milliseconds per render of ``size`` series: ours, prometheus_client, the stock OTel reader.

    Ours already holds whatever earlier rows recorded; this adds the plan's series (the same
    label values each time, so a larger size extends a smaller one).
    """
    from prometheus_client import generate_latest

    plan = series.plan(size)
    series.fill_ours(plan)
    prom_registry = series.prometheus_client_registry(plan)
    otel_registry, otel_provider = series.otel_stock_registry(plan)
    renders = {
        "ours": _ours_render,
        "prometheus_client": lambda: generate_latest(prom_registry),
        "otel_stock": lambda: generate_latest(otel_registry),
    }
    results: dict = {name: [] for name in renders}
    samples, first_ms = {}, {}
    for name, render in renders.items():  # the first render may fill caches: kept apart
        started = time.perf_counter()
        samples[name] = series.sample_lines(render())
        first_ms[name] = (time.perf_counter() - started) * 1e3
    for order in _rotations(renders, rounds):
        for name in order:
            gc.collect()
            started = time.perf_counter()
            renders[name]()
            results[name].append((time.perf_counter() - started) * 1e3)
    otel_provider.shutdown()
    return {"ms": results, "first_ms": first_ms, "samples": samples}


# -- the process ------------------------------------------------------------------------------------

def run(settings: dict) -> dict:
    started = time.perf_counter()
    asgi = asgi_rounds(settings["asgi_rounds"], settings["asgi_requests"])
    record = record_rounds(settings["record_rounds"], settings["record_number"])
    render = {str(size): render_rounds(size, settings["render_rounds"])
              for size in sorted(settings["render_sizes"])}
    return {"asgi_us": asgi, "record_us": record, "render": render,
            "seconds": time.perf_counter() - started}


def median_of(rounds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in rounds.items()}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
