"""Dead workers' files: disk use and a new worker's first scrape, before and after compaction.

    .venv/bin/python -m benchmarks.dead_workers            # 0, 1,000 and 10,000 dead workers
    .venv/bin/python -m benchmarks.dead_workers --quick    # 0, 10 and 100: a smoke run
    .venv/bin/python -m benchmarks.dead_workers --json raw.json

Each round makes, for every size, a fresh run directory (under ``/dev/shm`` unless ``--base``)
with two live workers and N dead ones. A worker file is what a worker of the demo leaves:
every series it recorded (request durations with exemplars, orders, query durations, a pool
gauge), written through the store's own writer; a dead worker's file is unlocked, as the kernel
leaves it. Then, in that order:

- disk before: the bytes the directory's files take (allocated blocks, as ``du`` counts);
- first scrape before: a new worker's first merge, reading every file (no compaction: the
  cost every new worker paid before compaction existed);
- compaction: every dead file folded into ``dead.totals``, batch after batch (in a real run
  the first scrape after a death folds it, and a backlog goes one batch per scrape);
- disk after, and first scrape after: a new worker's first merge once compacted.

Sizes are interleaved round by round (the order rotates); figures are median [min, max]
over the rounds. Every round checks that the totals before and after agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from mystocks_otel import catalog
from mystocks_otel._internal.instruments import Instruments
from mystocks_otel._internal.multiprocess.fileformat import ProcessFile, file_name
from mystocks_otel._internal.multiprocess.merge import RunMerge

from .stats import Summary

FULL_SIZES = (0, 1_000, 10_000)
QUICK_SIZES = (0, 10, 100)
LIVE = 2
ORDERS = "mystocks.trading.orders"


def worker_values() -> Instruments:
    """What one worker of the demo records: the series a dead worker's file holds."""
    inst = Instruments(catalog.METRICS)
    duration = inst["http.server.request.duration"]
    duration.exemplar_source = lambda: (0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0, 0x42)
    for route in ("/api/quotes/{symbol}", "/api/orders", "/health"):
        for status in (200, 404):
            for value in (0.003, 0.02, 0.2):
                duration.record(value, "GET", route, status)
    query = inst["mystocks.db.query_duration"]
    for table in ("quotes", "orders"):
        query.record(0.002, "SELECT", table)
    inst[ORDERS].add(3, "buy", "market", "filled")
    inst["mystocks.db.connections_active"].set(4, "postgresql/app")
    inst["http.server.active_requests"].add(1, "GET")
    return inst


def write_worker(dir_fd: int, inst: Instruments, slot: int) -> ProcessFile:
    for recorder in inst:
        recorder.sink_offsets = {}
    worker = ProcessFile(dir_fd, file_name(slot))
    worker.write_all(inst)
    return worker


def let_die(worker: ProcessFile) -> None:
    """As a killed worker: its lock released by the kernel, its pages kept."""
    worker.close_inherited()
    for mapped in worker._maps:
        try:
            mapped.close()
        except BufferError:  # a memoryview still points in: the GC unmaps it
            pass
    worker.view = worker.ints = worker.bytes = None


def disk_bytes(directory: str) -> int:
    return sum(os.lstat(os.path.join(directory, name)).st_blocks * 512
               for name in os.listdir(directory))


def first_scrape(directory: str, dir_fd: int, compact: bool) -> tuple[float, float]:
    """(seconds, orders total) of a new worker's first merge."""
    merge = RunMerge(directory, Instruments(catalog.METRICS), dir_fd, compact=compact)
    started = time.perf_counter()
    merged = merge.merged()
    elapsed = time.perf_counter() - started
    merge.close()
    return elapsed, sum(value for _, value in merged[ORDERS][0])


def measure(base: str, dead: int, inst: Instruments) -> dict:
    directory = tempfile.mkdtemp(prefix="dead-workers-", dir=base)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    live = []
    try:
        live = [write_worker(dir_fd, inst, slot) for slot in range(LIVE)]
        for index in range(dead):
            let_die(write_worker(dir_fd, inst, LIVE + index % 64))
        files_before = len(os.listdir(directory))
        disk_before = disk_bytes(directory)
        before, total_before = first_scrape(directory, dir_fd, compact=False)
        compactor = RunMerge(directory, Instruments(catalog.METRICS), dir_fd)
        started = time.perf_counter()
        folded = compactor.compact_dead(wait=True, everything=True)
        compaction = time.perf_counter() - started
        compactor.close()
        assert folded == dead, (folded, dead)
        disk_after = disk_bytes(directory)
        after, total_after = first_scrape(directory, dir_fd, compact=True)
        expected = 3 * (LIVE + dead)
        assert total_before == total_after == expected, (total_before, total_after, expected)
        return {"dead": dead, "files_before": files_before,
                "files_after": len(os.listdir(directory)), "disk_before": disk_before,
                "disk_after": disk_after, "scrape_before": before, "compaction": compaction,
                "scrape_after": after}
    finally:
        for worker in live:
            let_die(worker)
        os.close(dir_fd)
        shutil.rmtree(directory, ignore_errors=True)


def run(sizes, rounds: int, base: str) -> dict:
    inst = worker_values()
    results: dict = {str(size): [] for size in sizes}
    for index in range(rounds):
        order = sizes[index % len(sizes):] + sizes[:index % len(sizes)]
        for size in order:
            print(f"[{time.strftime('%H:%M:%S')}] round {index + 1}/{rounds}: "
                  f"{size:,} dead workers", file=sys.stderr, flush=True)
            results[str(size)].append(measure(base, size, inst))
    return results


def table(results: dict) -> str:
    def summary(runs, field, scale, digits, unit=""):
        return Summary.of([run[field] * scale for run in runs]).text(digits, unit)

    lines = ["| dead workers | files before -> after | disk before (MB) | disk after (MB) | "
             "first scrape before (ms) | compaction (ms) | first scrape after (ms) |",
             "|---|---|---|---|---|---|---|"]
    for size, runs in results.items():
        lines.append(
            f"| {int(size):,} | {runs[0]['files_before']:,} -> {runs[0]['files_after']:,} | "
            f"{summary(runs, 'disk_before', 1e-6, 2)} | {summary(runs, 'disk_after', 1e-6, 2)} | "
            f"{summary(runs, 'scrape_before', 1e3, 1)} | {summary(runs, 'compaction', 1e3, 1)} | "
            f"{summary(runs, 'scrape_after', 1e3, 2)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dead_workers",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0, 10 and 100 dead workers, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, --quick 2)")
    parser.add_argument("--sizes", help="comma-separated numbers of dead workers")
    parser.add_argument("--base", default="/dev/shm" if os.access("/dev/shm", os.W_OK)
                        else tempfile.gettempdir(), help="where the run directories go")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers to FILE")
    args = parser.parse_args(argv)
    sizes = (tuple(int(s) for s in args.sizes.split(",")) if args.sizes
             else QUICK_SIZES if args.quick else FULL_SIZES)
    rounds = args.rounds or (2 if args.quick else 3)
    started = time.perf_counter()
    results = run(sizes, rounds, args.base)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {rounds} rounds, "
          f"{LIVE} live workers, base {args.base}, {time.perf_counter() - started:.0f} s")
    print("figures: median [min, max]; disk: allocated bytes of the run directory's files")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
