"""Tracing and logs: what they add per request, ours against upstream's, and a dead Collector.

    .venv/bin/python -m benchmarks.tracing            # about 4 minutes on 2 idle cores
    .venv/bin/python -m benchmarks.tracing --quick    # a smoke run (noisy ratios)

Variants, on the same one-route app (``GET /ping``):

- ``bare``: FastAPI alone;
- ``upstream``: opentelemetry-instrumentation-fastapi's ``FastAPIInstrumentor`` (spans only,
  its metrics on a no-op meter provider) with the SDK's default ``BatchSpanProcessor`` and an
  OTLP/HTTP span exporter, plus upstream's logging handler on a ``LoggerProvider`` with the
  default ``BatchLogRecordProcessor`` and an OTLP/HTTP log exporter;
- ``ours``: ``setup_telemetry(app)`` with ``OTEL_TRACES_EXPORTER=otlp`` and
  ``OTEL_LOGS_EXPORTER=otlp`` (metrics, our server span, tail sampling at the default ratio,
  the log pipeline), metrics on ``/metrics``;
- ``ours_off``: ``setup_telemetry(app)`` with tracing and logs off (today's cost);
- ``ours_dead`` (uvicorn only): ``ours`` with the Collector down (nothing listens).

Every OTLP exporter sends to a sink process that answers 200 (a Collector stand-in that costs
the app nothing). Direct ASGI: one process per setting (the settings are process-wide), each
measuring its variants and ``bare`` round after round, paired; the added cost is
``variant - bare`` in the same round, and each variant's measurement ends with a flush of its
batch processors (the export of its spans and records is part of its cost). uvicorn: one worker per variant, variants alternating
round after round under the same closed-loop load; besides throughput, the server process's
own CPU time per request (``/proc``), which other jobs on a shared machine move much less.

Targets (issue 16): ours' added cost at most 0.5x upstream's; uvicorn throughput with tracing
at least 0.85x bare; tracing off costs what it costs today; with the Collector down, p99 within
1.10x of the Collector up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import loadgen
from .apps import _trivial_app
from .server import ROOT, _wait_settled, free_port

TRACED_ENV = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
              "OTEL_METRICS_EXPORTER": "prometheus", "MYSTOCKS_OTEL_SYSTEM_METRICS": "false"}
OFF_ENV = {"OTEL_METRICS_EXPORTER": "prometheus", "MYSTOCKS_OTEL_SYSTEM_METRICS": "false"}


# -- the apps ---------------------------------------------------------------------------------------
def _upstream(app):
    import logging

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider,
                                       meter_provider=NoOpMeterProvider())
    app.state.flush = lambda: (tracer_provider.force_flush(), logger_provider.force_flush())
    return app


def _ours(app):
    from mystocks_otel import setup_telemetry

    telemetry = setup_telemetry(app)  # the settings come from the environment (TRACED_ENV or OFF_ENV)
    tracer_provider = telemetry.runtime.tracer_provider

    def flush():
        from mystocks_otel._internal import state

        if tracer_provider is not None:
            tracer_provider.force_flush()
        if state.logs() is not None:
            state.logs().force_flush()

    app.state.flush = flush
    return app


def build(variant: str):
    app = _trivial_app()
    if variant == "upstream":
        return _upstream(app)
    if variant.startswith("ours"):
        return _ours(app)
    return app


# uvicorn factories (the environment chooses ours' settings)
def bare_app():
    return build("bare")


def upstream_app():
    return build("upstream")


def ours_app():
    return build("ours")


# -- the sink -----------------------------------------------------------------------------------------
class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def sink():
    """A sink process on a free port: yields its OTLP endpoint."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.tracing", "--sink", str(port)],
                            cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        from .server import wait_until
        from mystocks_otel_dev.stack.processes import port_open

        wait_until(lambda: port_open(port), 15, "the OTLP sink")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


# -- direct ASGI --------------------------------------------------------------------------------------
def _scope() -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/ping", "raw_path": b"/ping", "root_path": "",
            "query_string": b"", "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}


async def _per_request(app, count: int) -> float:
    """Seconds per request, the export of what the requests produced included: the batch
    processors' threads work for the requests too (the GIL), so each variant's are flushed
    inside its own measurement instead of slowing the next variant's."""
    template = _scope()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    flush = getattr(getattr(app, "state", None), "flush", None)
    started = time.perf_counter()
    for _ in range(count):
        await app(dict(template), receive, send)
    if flush is not None:
        flush()
    return (time.perf_counter() - started) / count


def asgi_process(variants: list[str], rounds: int, count: int) -> dict:
    """In this process: microseconds per request, one value per round, for each variant."""
    built = {variant: build(variant) for variant in variants}
    results: dict[str, list[float]] = {variant: [] for variant in built}

    async def main():
        for app in built.values():
            await _per_request(app, max(50, count // 4))
        names = list(built)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for variant in order:
                gc.collect()
                results[variant].append(await _per_request(built[variant], count) * 1e6)

    asyncio.run(main())
    return results


def _run_asgi(env: dict, variants: list[str], rounds: int, count: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.tracing", "--asgi-process",
         json.dumps({"variants": variants, "rounds": rounds, "count": count})],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MYSTOCKS_OTEL_"))},
             **env})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- uvicorn ----------------------------------------------------------------------------------------
@contextmanager
def _uvicorn(factory: str, env: dict):
    from mystocks_otel_dev.stack import processes
    from mystocks_otel_dev.stack.processes import Processes

    spec = processes.uvicorn(f"benchmarks.tracing:{factory}", None, "--factory", "--workers", "1",
                             "--log-level", "warning", "--no-access-log", name="uvicorn",
                             ready_path="/ping", env=env, cwd=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="mystocks-bench-") as workdir, Processes(workdir) as procs:
        proc = procs.start(spec)
        _wait_settled(proc.pid, 1)
        yield proc.port, proc.pid


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) ``pid`` has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_run(port: int, pid: int, seconds: float, connections: int, generator: str) -> dict:
    """One load run, with the server's own CPU per request (microseconds): throughput on a
    shared machine moves with everyone's load, the server's CPU per request much less."""
    before = cpu_seconds(pid)
    run = loadgen.run(port, seconds, connections, generator)
    run["cpu_us"] = (cpu_seconds(pid) - before) / max(1, run["requests"]) * 1e6
    return run


def uvicorn_rounds(endpoint: str, rounds: int, seconds: float, connections: int, generator: str) -> dict:
    dead = f"http://127.0.0.1:{free_port()}"
    setups = {"bare": ("bare_app", OFF_ENV),
              "upstream": ("upstream_app", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}),
              "ours": ("ours_app", {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}),
              "ours_dead": ("ours_app", {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": dead})}
    runs: dict[str, list] = {name: [] for name in setups}
    names = list(setups)
    for r in range(rounds):
        print(f"[{time.strftime('%H:%M:%S')}] uvicorn round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        for name in names[r % len(names):] + names[:r % len(names)]:
            factory, env = setups[name]
            with _uvicorn(factory, env) as (port, pid):
                loadgen.run(port, min(1.0, seconds / 2), connections, generator)
                runs[name].append(measured_run(port, pid, seconds, connections, generator))
    return runs


# -- the report -----------------------------------------------------------------------------------
def _median(values) -> float:
    return statistics.median(values)


def summary(data: dict) -> list[tuple[str, str, str]]:
    """(row, measured, target) lines."""
    rows = []
    for key, label in (("traced", "tracing and logs on"), ("off", "tracing and logs off")):
        process_rows = data["asgi"][key]
        added = {}
        for variant in process_rows[0]:
            if variant == "bare":
                continue
            per_process = [_median([v - b for v, b in zip(p[variant], p["bare"])]) for p in process_rows]
            added[variant] = per_process
        for variant, values in added.items():
            rows.append((f"direct ASGI, {label}: {variant} adds (us/request)",
                         f"{_median(values):.1f} [{min(values):.1f}, {max(values):.1f}]", ""))
        if "upstream" in added and "ours" in added:
            ratios = [o / u for o, u in zip(added["ours"], added["upstream"]) if u]
            rows.append(("direct ASGI: ours' added cost / upstream's",
                         f"{_median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]", "<= 0.50"))
    runs = data.get("uvicorn")
    if runs:
        def ratio(name, other, field):
            values = [a[field] / b[field] for a, b in zip(runs[name], runs[other]) if b[field]]
            return f"{_median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"

        rows.append(("uvicorn: ours traced rps / bare", ratio("ours", "bare", "rps"), ">= 0.85"))
        if all("cpu_us" in run for run in runs["ours"] + runs["bare"]):
            for name in ("bare", "ours", "upstream"):
                values = [run["cpu_us"] for run in runs[name]]
                rows.append((f"uvicorn: {name}, server CPU per request (us)",
                             f"{_median(values):.1f} [{min(values):.1f}, {max(values):.1f}]", ""))
            rows.append(("uvicorn: bare CPU per request / ours traced", ratio("bare", "ours", "cpu_us"),
                         "(the rps ratio on an idle CPU)"))
        rows.append(("uvicorn: upstream traced rps / bare", ratio("upstream", "bare", "rps"), ""))
        rows.append(("uvicorn: ours traced p99 / bare", ratio("ours", "bare", "p99_ms"), ""))
        rows.append(("uvicorn: Collector down, p99 / Collector up", ratio("ours_dead", "ours", "p99_ms"),
                     "<= 1.10"))
        rows.append(("uvicorn: Collector down, rps / Collector up", ratio("ours_dead", "ours", "rps"), ""))
    return rows


def table(data: dict) -> str:
    rows = summary(data)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'row'.ljust(width)}  {'median [min, max]':<24}  target"]
    lines += [f"{name.ljust(width)}  {value:<24}  {target}" for name, value, target in rows]
    return "\n".join(lines)


def collect(quick: bool = False, generator: str = "auto") -> dict:
    processes, rounds, count = (1, 2, 200) if quick else (3, 10, 2000)
    data: dict = {"asgi": {"traced": [], "off": []}}
    with sink() as endpoint:
        for index in range(processes):
            print(f"[{time.strftime('%H:%M:%S')}] direct ASGI, process {index + 1}/{processes}",
                  file=sys.stderr, flush=True)
            data["asgi"]["traced"].append(_run_asgi(
                {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
                ["bare", "upstream", "ours"], rounds, count))
            data["asgi"]["off"].append(_run_asgi(OFF_ENV, ["bare", "ours_off"], rounds, count))
        data["uvicorn"] = uvicorn_rounds(endpoint, 1 if quick else 4, 1.0 if quick else 4.0,
                                         16, loadgen.resolve(generator))
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--generator", choices=loadgen.GENERATORS, default="auto")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--asgi-process", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        ThreadingHTTPServer(("127.0.0.1", args.sink), _Sink).serve_forever()
        return 0
    if args.asgi_process:
        plan = json.loads(args.asgi_process)
        print(json.dumps(asgi_process(plan["variants"], plan["rounds"], plan["count"])))
        return 0
    data = collect(args.quick, args.generator)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(data, out, indent=1)
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
