"""Side-by-side overhead of mystocks-otel and the reference libraries, in one run.

    .venv/bin/python benchmarks/overhead.py            # the table (~1 minute on 2 cores)
    .venv/bin/python benchmarks/overhead.py --json     # the raw numbers as well

Every variant runs in its own subprocess (the MeterProvider and prometheus_client's
REGISTRY are process-wide), in alternating rounds, and reports medians:

- GET /ping called directly through ASGI (no network), per request, for: a bare FastAPI
  app; ``setup_telemetry(app)``; prometheus-fastapi-instrumentator; upstream
  FastAPIInstrumentor with a Prometheus reader. Overhead = variant - bare.
- GET /metrics through ASGI after those requests (render time).
- Record cost of one counter add / histogram record: ours, the OTel SDK, prometheus_client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import timeit

VARIANTS = ("bare", "ours", "instrumentator", "upstream")
ITERATIONS = 3_000
REPEATS = 7
WARMUP = 500
ROUNDS = 2


# -- inside a variant's process ---------------------------------------------------------------

def build_app(variant: str):
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping():
        return {"ok": True}

    if variant == "ours":
        from mystocks_otel import setup_telemetry

        setup_telemetry(app, system_metrics=False)
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    elif variant == "upstream":
        from fastapi import Response
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
        FastAPIInstrumentor.instrument_app(app, meter_provider=provider)

        @app.get("/metrics")
        def metrics():
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
    return app


def scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}


async def call(app, path: str, count: int) -> tuple[float, int]:
    """Seconds per request for ``count`` requests, and the last response's body size."""
    template = scope(path)
    sent = {"status": 0, "bytes": 0}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"], sent["bytes"] = message["status"], 0
        elif message["type"] == "http.response.body":
            sent["bytes"] += len(message.get("body", b""))

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(template), receive, send)
    elapsed = (time.perf_counter() - started) / count
    assert sent["status"] == 200, f"GET {path} -> {sent['status']}"
    return elapsed, sent["bytes"]


def run_variant(variant: str) -> dict:
    app = build_app(variant)

    async def main():
        await call(app, "/ping", WARMUP)
        per_request = [(await call(app, "/ping", ITERATIONS))[0] for _ in range(REPEATS)]
        result = {"variant": variant, "ping_us": statistics.median(per_request) * 1e6}
        if variant != "bare":
            renders = [await call(app, "/metrics", 1) for _ in range(15)]
            result["render_ms"] = statistics.median(r[0] for r in renders) * 1e3
            result["render_bytes"] = renders[-1][1]
        return result

    return asyncio.run(main())


def per_call_us(fn, number: int = 100_000) -> float:
    fn()
    return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def run_micro() -> dict:
    from fastapi import FastAPI
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, Counter, Histogram

    import mystocks_otel
    from mystocks_otel import instruments

    mystocks_otel.setup_telemetry(FastAPI(), system_metrics=False)
    ours_counter = instruments.counter("mystocks.trading.orders")
    ours_hist = instruments.histogram("mystocks.trading.order_latency")

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    sdk_counter = meter.create_counter("orders")
    sdk_hist = meter.create_histogram("latency", unit="s")
    attrs3 = {"side": "buy", "type": "limit", "status": "filled"}
    attrs2 = {"side": "buy", "type": "limit"}

    registry = CollectorRegistry()
    prom_counter = Counter("orders", "o", ["side", "type", "status"], registry=registry)
    prom_hist = Histogram("latency", "l", ["side", "type"], registry=registry)
    bound = prom_counter.labels("buy", "limit", "filled")
    totals: dict = {}
    key = ("buy", "limit", "filled")

    def floor():
        totals[key] = totals.get(key, 0) + 1

    return {
        "floor: dict add (3-tuple key)": per_call_us(floor),
        "ours counter add": per_call_us(lambda: ours_counter.add(1, "buy", "limit", "filled")),
        "ours record_order()": per_call_us(lambda: mystocks_otel.record_order("buy", "limit", "filled")),
        "ours histogram record": per_call_us(lambda: ours_hist.record(0.01, "buy", "limit")),
        "OTel SDK Counter.add (3 attrs)": per_call_us(lambda: sdk_counter.add(1, attrs3)),
        "OTel SDK Histogram.record (2 attrs)": per_call_us(lambda: sdk_hist.record(0.01, attrs2)),
        "prometheus_client labels().inc()": per_call_us(
            lambda: prom_counter.labels("buy", "limit", "filled").inc()),
        "prometheus_client bound child inc()": per_call_us(bound.inc),
        "prometheus_client labels().observe()": per_call_us(
            lambda: prom_hist.labels("buy", "limit").observe(0.01)),
    }


# -- the driver ---------------------------------------------------------------------------------

def in_subprocess(arg: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--variant", arg], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"variant {arg} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def collect() -> dict:
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(ROUNDS):  # alternate, so drift hits every variant alike
        for variant in VARIANTS:
            runs[variant].append(in_subprocess(variant))
    merged = {}
    for variant, results in runs.items():
        merged[variant] = {key: statistics.median(r[key] for r in results)
                           for key in results[0] if key != "variant"}
    return {"asgi": merged, "micro": in_subprocess("micro")}


def report(data: dict) -> str:
    asgi = data["asgi"]
    bare = asgi["bare"]["ping_us"]
    lines = [f"GET /ping through ASGI, median of {ROUNDS} processes x {REPEATS} repeats x "
             f"{ITERATIONS} requests",
             f"{'variant':<34}{'per request':>13}{'overhead':>11}{'x bare':>8}{'/metrics render':>24}"]
    for variant in VARIANTS:
        row = asgi[variant]
        render = (f"{row['render_ms']:.2f} ms ({row['render_bytes']:.0f} B)"
                  if "render_ms" in row else "-")
        lines.append(f"{variant:<34}{row['ping_us']:>10.1f} us{row['ping_us'] - bare:>+8.1f} us"
                     f"{row['ping_us'] / bare:>7.2f}x  {render:>22}")
    ours = asgi["ours"]["ping_us"] - bare
    instr = asgi["instrumentator"]["ping_us"] - bare
    upstream = asgi["upstream"]["ping_us"] - bare
    lines.append(f"ours overhead / instrumentator overhead = {ours / instr:.2f} (target <= 0.75)")
    lines.append(f"ours overhead / upstream overhead       = {ours / upstream:.2f}")
    lines.append("")
    lines.append(f"{'record cost (one call)':<42}{'median':>10}")
    for name, value in data["micro"].items():
        lines.append(f"{name:<42}{value:>7.3f} us")
    counter = data["micro"]["ours counter add"]
    lines.append(f"ours counter add / OTel SDK Counter.add = "
                 f"{counter / data['micro']['OTel SDK Counter.add (3 attrs)']:.2f}; "
                 f"/ prometheus labels().inc() = "
                 f"{counter / data['micro']['prometheus_client labels().inc()']:.2f} "
                 f"(target <= 0.5 us: {'met' if counter <= 0.5 else 'MISSED'}; "
                 f"{counter / data['micro']['floor: dict add (3-tuple key)']:.1f}x the dict floor)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=(*VARIANTS, "micro"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the raw numbers too")
    args = parser.parse_args()
    if args.variant == "micro":
        print(json.dumps(run_micro()))
    elif args.variant:
        print(json.dumps(run_variant(args.variant)))
    else:
        started = time.perf_counter()
        data = collect()
        print(report(data))
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
        if args.json:
            print(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
