"""``python -m benchmarks.dead_workers --quick`` runs and prints its table (a smoke run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_dead_workers_benchmark_runs_at_smoke_size(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.dead_workers", "--sizes", "0,3,30", "--rounds", "1",
         "--base", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MYSTOCKS_OTEL_SYSTEM_METRICS": "false"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("| 30 | 32 -> 4 |") for line in lines), result.stdout
    assert os.listdir(tmp_path) == []  # every run directory removed
