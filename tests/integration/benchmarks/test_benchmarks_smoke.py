"""The benchmark command still runs and prints every row (no timing is asserted here).

``python -m benchmarks --quick`` starts the in-process benchmarks, the memory processes, real
uvicorn servers and a scrape under load, with few repeats. The ratios of a quick run are
noise; what this test pins is that every row of the table printed its numbers.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support import ROOT  # noqa: E402 - the checkout, found explicitly
NUMBER = re.compile(r"-?\d+(\.\d+)?( ?[a-z/]+)? \[-?\d+(\.\d+)?, -?\d+(\.\d+)?\]", re.I)

#: Every row the table must have (render, memory and scrape ids carry the quick run's sizes).
EXPECTED = {
    "asgi.instrumentator", "asgi.starlette_exporter", "asgi.upstream", "asgi.body_size",
    "record.histogram", "record.histogram_sdk", "record.counter",
    "uvicorn.1w.p99", "uvicorn.1w.rps", "uvicorn.3w.p99", "uvicorn.3w.rps",
    "render.100.prometheus_client", "render.100.otel_stock",
    "render.1k.prometheus_client", "render.1k.otel_stock",
    "memory.prometheus_client", "memory.otel_stock",
    "scrape.1k",
}


def _quick(module: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", module, "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.live
def test_quick_run_prints_a_number_in_every_row():
    result = _quick("benchmarks")
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] not in ("id", "---"):
            rows[cells[0]] = cells
    assert set(rows) == EXPECTED, result.stdout
    for key, (_id, _what, ours, against, ratio, target, met, _over) in rows.items():
        for cell in (ours, against, ratio):
            assert NUMBER.search(cell), f"{key}: no 'median [min, max]' in {cell!r}"
        assert met in ("yes", "NO", "-"), f"{key}: verdict {met!r}"
        assert (met == "-") == (target == "(shown)"), f"{key}: target {target!r}, met {met!r}"


#: The rows of ``python -m benchmarks.tracing`` (issue 16) that carry a target.
TRACING_TARGETS = {
    "direct ASGI: ours' added cost / upstream's": "<= 0.50",
    "uvicorn: ours traced rps / bare (same process)": ">= 0.85",
    "uvicorn: Collector down, p99 / Collector up": "<= 1.10",
}


@pytest.mark.live
def test_the_tracing_benchmark_prints_its_rows():
    result = _quick("benchmarks.tracing")
    rows = {}
    for line in result.stdout.splitlines()[1:]:
        name, _, rest = line.partition("  ")
        rows[name.strip()] = rest.strip()
    for name, target in TRACING_TARGETS.items():
        assert name in rows and rows[name].endswith(target), result.stdout
        assert re.match(r"-?\d+\.\d+ \[", rows[name]), f"{name}: {rows[name]!r}"
    opcodes = {name: int(rows[f"opcodes per request: {name} (of them in mystocks_otel)"].split()[0])
               for name in ("bare", "ours_off", "ours")}
    assert opcodes["bare"] < opcodes["ours_off"] < opcodes["ours"], opcodes
