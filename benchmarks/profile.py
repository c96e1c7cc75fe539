"""Where our time goes, before anyone optimises: cProfile of one row's code path.

    .venv/bin/python -m benchmarks.profile asgi      # GET /ping through setup_telemetry's app
    .venv/bin/python -m benchmarks.profile record    # histogram record
    .venv/bin/python -m benchmarks.profile render    # /metrics render of 10,000 series

Prints the functions with the most own time. Profiling slows pure-Python code unevenly: read
it for where the time goes, and the table for how much.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats

from . import apps, inprocess, series


def _asgi(count: int) -> None:
    app = apps.build("ours")
    asyncio.run(inprocess._requests(app, 100))
    with cProfile.Profile() as profiler:
        asyncio.run(inprocess._requests(app, count))
    return profiler


def _record(count: int):
    apps.build("ours")
    record = inprocess._record_calls()["ours_histogram"]
    record()
    with cProfile.Profile() as profiler:
        for _ in range(count):
            record()
    return profiler


def _render(count: int):
    apps.build("ours")
    series.fill_ours(series.plan(10_000))
    inprocess._ours_render()
    with cProfile.Profile() as profiler:
        for _ in range(max(1, count // 1000)):
            inprocess._ours_render()
    return profiler


ROWS = {"asgi": _asgi, "record": _record, "render": _render}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("row", choices=sorted(ROWS))
    parser.add_argument("--count", type=int, default=20_000, help="calls to profile")
    parser.add_argument("--top", type=int, default=20, help="functions to print")
    args = parser.parse_args(argv)
    profiler = ROWS[args.row](args.count)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
