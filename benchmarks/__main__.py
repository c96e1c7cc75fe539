"""mystocks-otel against the reference libraries, in one command.

    .venv/bin/python -m benchmarks            # the full table (about 5 minutes on 2 idle cores)
    .venv/bin/python -m benchmarks --quick    # every row, few repeats (about 30 s): a smoke run
    .venv/bin/python -m benchmarks --json raw.json   # also keep the raw numbers
    .venv/bin/python -m benchmarks --only inprocess  # the asgi, record and render rows only

How the numbers are made (see BENCHMARKS.md):

- direct ASGI, record calls and /metrics renders: several benchmark processes, started one
  after another; inside each, every variant is measured once per round, round after round,
  and the process reports its medians. Ratios are paired within a process.
- memory: one fresh process per measurement, ours / prometheus_client / OTel alternating.
- uvicorn: bare and instrumented servers alternate, round after round, under the same load.
- scrape under load: paced requests while ``/metrics`` (10k series) is scraped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

from . import loadgen, report, server, tracing
from .server import ROOT


@dataclass(frozen=True)
class Plan:
    processes: int
    asgi_rounds: int
    asgi_requests: int
    record_rounds: int
    record_number: int
    render_rounds: int
    render_sizes: tuple[int, ...]
    memory_rounds: int
    memory_series: int
    uvicorn_rounds: int
    uvicorn_seconds: float
    uvicorn_warmup: float
    connections: int
    scrape_series: int
    scrapes: int

    def inprocess_settings(self) -> dict:
        return {"asgi_rounds": self.asgi_rounds, "asgi_requests": self.asgi_requests,
                "record_rounds": self.record_rounds, "record_number": self.record_number,
                "render_rounds": self.render_rounds, "render_sizes": list(self.render_sizes)}


WORKERS = (1, 3)

FULL = Plan(processes=3, asgi_rounds=12, asgi_requests=2_000, record_rounds=9,
            record_number=50_000, render_rounds=7, render_sizes=(1_000, 10_000),
            memory_rounds=3, memory_series=10_000, uvicorn_rounds=5, uvicorn_seconds=4,
            uvicorn_warmup=1.0, connections=16, scrape_series=10_000, scrapes=10)

# Every row, with small sizes and few repeats: it proves the command works, not the ratios.
QUICK = Plan(processes=2, asgi_rounds=2, asgi_requests=100, record_rounds=2, record_number=2_000,
             render_rounds=1, render_sizes=(100, 1_000), memory_rounds=1, memory_series=500,
             uvicorn_rounds=1, uvicorn_seconds=1, uvicorn_warmup=0.2, connections=8,
             scrape_series=1_000, scrapes=2)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _python_module(*args: str, timeout: float = 600) -> dict:
    """Run ``python -m benchmarks.<...>`` in a fresh process; its last stdout line is JSON."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout,
                            env={**os.environ, "MYSTOCKS_OTEL_SYSTEM_METRICS": "false"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_inprocess(plan: Plan) -> list[dict]:
    settings = json.dumps(plan.inprocess_settings())
    results = []
    for index in range(plan.processes):  # one after another: they share the cores
        _say(f"in-process benchmarks, process {index + 1}/{plan.processes}")
        results.append(_python_module("benchmarks.inprocess", settings))
    return results


def run_memory(plan: Plan) -> dict:
    from .memory import VARIANTS

    result: dict = {"series": plan.memory_series, **{variant: [] for variant in VARIANTS}}
    for index in range(plan.memory_rounds):
        order = VARIANTS[index % len(VARIANTS):] + VARIANTS[:index % len(VARIANTS)]
        _say(f"memory per series, round {index + 1}/{plan.memory_rounds}")
        for variant in order:
            measured = _python_module("benchmarks.memory", variant, str(plan.memory_series))
            result[variant].append(measured["bytes_per_series"])
    return result


def _serve_and_load(factory: str, workers: int, plan: Plan, generator: str) -> dict:
    with server.uvicorn(factory, workers) as port:
        loadgen.run(port, plan.uvicorn_warmup, plan.connections, generator)  # every worker warm
        return loadgen.run(port, plan.uvicorn_seconds, plan.connections, generator)


def run_uvicorn(plan: Plan, generator: str) -> dict:
    result = {}
    for workers in WORKERS:
        runs: dict = {"bare": [], "ours": [], "connections": plan.connections,
                      "generator": generator}
        for index in range(plan.uvicorn_rounds):
            _say(f"uvicorn --workers {workers}, round {index + 1}/{plan.uvicorn_rounds}")
            order = ("bare", "ours") if index % 2 == 0 else ("ours", "bare")
            for variant in order:
                runs[variant].append(_serve_and_load(f"{variant}_app", workers, plan, generator))
        result[str(workers)] = runs
    return result


def run_scrape(plan: Plan) -> dict:
    _say(f"a {plan.scrape_series:,}-series scrape under load")
    env = {"BENCH_SERIES": str(plan.scrape_series)}
    with server.uvicorn("ours_app", 1, env=env) as port:
        loadgen.scrape_alone(port, 2)  # warm
        alone = loadgen.scrape_alone(port, max(3, plan.scrapes))
        under_load = loadgen.paced_with_scrapes(port, plan.scrapes)
    return {"series": plan.scrape_series, "alone": alone, **under_load}


def machine(generator: str) -> dict:
    from importlib.metadata import version

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    packages = ("mystocks-otel", "opentelemetry-sdk", "opentelemetry-exporter-prometheus",
                "opentelemetry-instrumentation-fastapi", "prometheus-client",
                "prometheus-fastapi-instrumentator", "starlette-exporter", "fastapi",
                "starlette", "uvicorn")
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "load_before": os.getloadavg(), "generator": generator,
            "packages": {name: version(name) for name in packages}}


#: The phases, in the order they run; ``--only`` picks some (their rows only are printed).
#: ``tracing`` (tracing and logs against upstream, a dead Collector) has its own table.
PHASES = ("inprocess", "memory", "uvicorn", "scrape", "tracing")


def collect(plan: Plan, generator: str, phases=PHASES) -> dict:
    data = {"machine": machine(generator), "plan": plan.__dict__}
    run = {"inprocess": lambda: run_inprocess(plan), "memory": lambda: run_memory(plan),
           "uvicorn": lambda: run_uvicorn(plan, generator), "scrape": lambda: run_scrape(plan),
           "tracing": lambda: tracing.collect(plan is QUICK, generator)}
    for phase in PHASES:
        if phase in phases:
            data[phase] = run[phase]()
    data["machine"]["load_after"] = os.getloadavg()
    return data


def header(data: dict, seconds: float) -> str:
    info = data["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    return (f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, load "
            f"{info['load_before'][0]:.2f} before / {info['load_after'][0]:.2f} after, "
            f"load generator {info['generator']}, {seconds:.0f} s\n{packages}\n"
            "figures: median [min, max]; ratio = ours / against, paired per process or round")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every row with few repeats (a smoke run; the ratios are noisy)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers to FILE")
    parser.add_argument("--generator", choices=loadgen.GENERATORS, default="auto",
                        help="load generator for the uvicorn rows (auto: wrk when installed)")
    parser.add_argument("--only", choices=PHASES, action="append", metavar="PHASE",
                        help="run this phase only (repeatable): inprocess (the asgi, record and "
                             "render rows), memory, uvicorn, scrape or tracing")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = collect(QUICK if args.quick else FULL, loadgen.resolve(args.generator),
                   tuple(args.only or PHASES))
    elapsed = time.perf_counter() - started
    if args.json:
        with open(args.json, "w") as out:
            json.dump(data, out, indent=1)
    print(header(data, elapsed))
    print()
    if set(data) & {"inprocess", "memory", "uvicorn", "scrape"}:
        print(report.table(report.rows(data)))
    if "tracing" in data:
        print()
        print(tracing.table(data["tracing"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
