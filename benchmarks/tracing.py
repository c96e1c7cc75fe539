"""Tracing and logs: what they add per request, ours against upstream's, and a dead Collector.

    .venv/bin/python -m benchmarks.tracing            # about 7 minutes on 2 idle cores
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
batch processors (the export of its spans and records is part of its cost).

uvicorn: one worker serves ``bare`` at ``/bare`` and a variant at ``/ping`` (:func:`_paired`);
the same closed-loop load (wrk) goes to one path, then the other, round after round, which
first alternating. Each ratio pairs the two runs of a round inside one process, so the spread
between processes (a fresh interpreter's memory layout moved bare alone by 30% here) does not
enter it; three processes per setting show what is left. Besides throughput, the server
process's own CPU time per request (``/proc``), which other jobs on a shared machine move less.
(The batch processor exports what a variant's run left queued within 5 s, sometimes during the
next bare run: at most 512 spans, about 1.5 us per bare request of a 3 s run, in ours' favour.)

Opcodes: the bytecode instructions Python runs per direct-ASGI request (``sys.settrace``), for
bare and ours with tracing off and on. Unlike time, they do not move with the machine's load:
they show how much work each variant does, and what 0.85x would leave for ours.

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


# uvicorn factories: one process serves bare at BARE_PATH and a variant at /ping (the
# environment chooses ours' settings)
BARE_PATH = "/bare"


def _paired(variant: str):
    """Two apps in one process: ``bare`` answers ``BARE_PATH``, ``variant`` everything else.
    Load alternating between the two paths compares them inside one interpreter (its memory
    layout, its threads, its share of the machine), without the spread between processes."""
    bare, other = build("bare"), build(variant)

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == BARE_PATH:
            scope["path"], scope["raw_path"] = "/ping", b"/ping"
            return await bare(scope, receive, send)
        return await other(scope, receive, send)

    return app


def paired_ours():
    return _paired("ours")


def paired_upstream():
    return _paired("upstream")


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


def measured_run(port: int, pid: int, seconds: float, connections: int, generator: str,
                 path: str = loadgen.PATH) -> dict:
    """One load run, with the server's own CPU per request (microseconds): throughput on a
    shared machine moves with everyone's load, the server's CPU per request much less."""
    before = cpu_seconds(pid)
    run = loadgen.run(port, seconds, connections, generator, path)
    run["cpu_us"] = (cpu_seconds(pid) - before) / max(1, run["requests"]) * 1e6
    return run


def uvicorn_rounds(endpoint: str, processes: int, rounds: int, seconds: float, connections: int,
                   generator: str) -> dict:
    """For each setting, ``processes`` servers one after the other; in each, ``rounds`` of
    load on bare and on the variant, alternating which goes first. Returns, per setting,
    ``{"bare": [...], "variant": [...]}``: one run each per round, paired by position."""
    dead = f"http://127.0.0.1:{free_port()}"
    setups = {"ours": ("paired_ours", {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}),
              "ours_off": ("paired_ours", OFF_ENV),
              "upstream": ("paired_upstream", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}),
              "ours_dead": ("paired_ours", {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": dead})}
    runs: dict[str, dict] = {name: {"bare": [], "variant": []} for name in setups}
    names = list(setups)
    for p in range(processes):
        for name in names[p % len(names):] + names[:p % len(names)]:
            print(f"[{time.strftime('%H:%M:%S')}] uvicorn process {p + 1}/{processes}: {name}",
                  file=sys.stderr, flush=True)
            factory, env = setups[name]
            with _uvicorn(factory, env) as (port, pid):
                for path in (BARE_PATH, loadgen.PATH):  # warm both
                    loadgen.run(port, min(1.0, seconds / 2), connections, generator, path)
                for r in range(rounds):
                    sides = [("bare", BARE_PATH), ("variant", loadgen.PATH)]
                    for side, path in (sides if r % 2 == 0 else sides[::-1]):
                        run = measured_run(port, pid, seconds, connections, generator, path)
                        runs[name][side].append({**run, "process": p})
    return runs


# -- Python's own work per request (deterministic) ---------------------------------------------------
def opcodes_process(variant: str, count: int) -> dict:
    """Bytecode instructions the interpreter runs per direct-ASGI request, by file: the one
    measure of work here that no other job on the machine moves."""
    app = build(variant)
    counts: dict[str, int] = {}

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            name = frame.f_code.co_filename
            counts[name] = counts.get(name, 0) + 1
        return tracer

    async def main(traced: bool):
        template = _scope()

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        for _ in range(count):
            if traced:
                sys.settrace(tracer)
            await app(dict(template), receive, send)
            sys.settrace(None)

    asyncio.run(main(False))  # warm: the first requests resolve routes and caches
    asyncio.run(main(True))
    ours = sum(n for name, n in counts.items() if f"{os.sep}mystocks_otel{os.sep}" in name)
    return {"total": sum(counts.values()) / count, "ours": ours / count}


def _run_opcodes(env: dict, variant: str, count: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.tracing", "--opcodes-process",
         json.dumps({"variant": variant, "count": count})],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MYSTOCKS_OTEL_"))},
             **env})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def opcodes(endpoint: str, count: int) -> dict:
    """Opcodes per request: bare, ours with tracing and logs off, ours with them on."""
    traced = {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    return {"bare": _run_opcodes(OFF_ENV, "bare", count),
            "ours_off": _run_opcodes(OFF_ENV, "ours", count),
            "ours": _run_opcodes(traced, "ours", count)}


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
    rows += _opcode_rows(data.get("opcodes"))
    rows += _uvicorn_rows(data.get("uvicorn"))
    return rows


def _spread(values) -> str:
    return f"{_median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def _opcode_rows(counts) -> list:
    if not counts:
        return []
    bare = counts["bare"]["total"]
    rows = [(f"opcodes per request: {name} (of them in mystocks_otel)",
             f"{counts[name]['total']:.0f} ({counts[name]['ours']:.0f})", "")
            for name in ("bare", "ours_off", "ours")]
    rows.append(("opcodes per request: bare / ours traced", f"{bare / counts['ours']['total']:.2f}",
                 f"(0.85 would leave ours {bare / 0.85 - bare:.0f} opcodes)"))
    return rows


def _uvicorn_rows(runs) -> list:
    if not runs:
        return []

    def ratio(name, field, other=None):
        """Per round, the variant's ``field`` over bare's in the same process (or over the
        ``other`` setting's variant, same process index and round)."""
        mine = runs[name]["variant"]
        theirs = runs[other]["variant"] if other else runs[name]["bare"]
        values = [a[field] / b[field] for a, b in zip(mine, theirs) if b[field]]
        processes = sorted({run["process"] for run in mine})
        per_process = [_median([a[field] / b[field] for a, b in zip(mine, theirs)
                                if a["process"] == p and b[field]]) for p in processes]
        return _spread(values) + "  by process: " + ", ".join(f"{v:.2f}" for v in per_process)

    rows = [("uvicorn: ours traced rps / bare (same process)", ratio("ours", "rps"), ">= 0.85"),
            ("uvicorn: ours, tracing and logs off, rps / bare", ratio("ours_off", "rps"), "(shown)"),
            ("uvicorn: upstream traced rps / bare", ratio("upstream", "rps"), "(shown)")]
    if all("cpu_us" in run for side in runs["ours"].values() for run in side):
        for name, label in (("ours", "ours traced"), ("ours_off", "ours off"), ("upstream", "upstream")):
            bare = [run["cpu_us"] for run in runs[name]["bare"]]
            variant = [run["cpu_us"] for run in runs[name]["variant"]]
            rows.append((f"uvicorn: server CPU per request (us), bare / {label}",
                         f"{_median(bare):.0f} / {_median(variant):.0f}", ""))
        rows.append(("uvicorn: bare CPU per request / ours traced", _cpu_ratio(runs["ours"]),
                     "(the rps ratio on an idle CPU)"))
    rows.append(("uvicorn: ours traced p99 / bare", ratio("ours", "p99_ms"), ""))
    rows.append(("uvicorn: Collector down, p99 / Collector up", ratio("ours_dead", "p99_ms", "ours"),
                 "<= 1.10"))
    rows.append(("uvicorn: Collector down, rps / Collector up", ratio("ours_dead", "rps", "ours"), ""))
    return rows


def _cpu_ratio(setting: dict) -> str:
    values = [b["cpu_us"] / v["cpu_us"] for b, v in zip(setting["bare"], setting["variant"]) if v["cpu_us"]]
    return _spread(values)


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
        data["opcodes"] = opcodes(endpoint, 50 if quick else 200)
        data["uvicorn"] = uvicorn_rounds(endpoint, 1 if quick else 3, 1 if quick else 3,
                                         1.0 if quick else 3.0, 16, loadgen.resolve(generator))
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--generator", choices=loadgen.GENERATORS, default="auto")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--asgi-process", help=argparse.SUPPRESS)
    parser.add_argument("--opcodes-process", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        ThreadingHTTPServer(("127.0.0.1", args.sink), _Sink).serve_forever()
        return 0
    if args.opcodes_process:
        plan = json.loads(args.opcodes_process)
        print(json.dumps(opcodes_process(plan["variant"], plan["count"])))
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
