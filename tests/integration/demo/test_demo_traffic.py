"""The traffic generator against a real uvicorn serving the demo (bounded: a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mystocks_otel_dev.demo.traffic import run_traffic
from demo_support import ROOT, uvicorn_demo
from support import free_port


@pytest.fixture
def demo_url(tmp_path, throwaway_redis):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "REDIS_URL": throwaway_redis["url"],
           "MYSTOCKS_DEMO_TICK_SECONDS": "0.1", "OTEL_METRICS_EXPORTER": "prometheus"}
    with uvicorn_demo(env, log_path=tmp_path / "uvicorn.log") as base:
        yield base


def test_run_traffic_hits_everything_and_stops(demo_url):
    started = time.monotonic()
    result = run_traffic(demo_url, duration_s=3, concurrency=4, websocket_clients=2, seed=7)
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 5, "stops by itself"
    statuses = result["by_status"]
    assert result["requests"] > 50
    assert not [k for k in statuses if k.startswith("error:")], statuses
    assert not [k for k in statuses if k.startswith("5")], f"no faults set, yet {statuses}"
    assert {"200", "201", "404", "422"} <= set(statuses), "good and hostile requests both"
    assert result["websocket"]["connections"] >= 2 and result["websocket"]["received"] > 0


def test_max_requests_bounds_the_run(demo_url):
    result = run_traffic(demo_url, duration_s=30, concurrency=2, websocket_clients=0, max_requests=20)
    assert result["requests"] == 20 and result["duration_s"] < 30


def test_cli_prints_json_and_exit_status(demo_url):
    ok = subprocess.run([sys.executable, "-m", "mystocks_otel_dev.demo.traffic", "--base-url", demo_url,
                         "--duration", "1", "--concurrency", "2", "--websocket-clients", "1"],
                        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["requests"] > 0
    down = subprocess.run([sys.executable, "-m", "mystocks_otel_dev.demo.traffic", "--base-url",
                           f"http://127.0.0.1:{free_port()}", "--duration", "0.5",
                           "--websocket-clients", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1, "nothing answered"
    assert all(k.startswith("error:") for k in json.loads(down.stdout)["by_status"])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        run_traffic("http://127.0.0.1:1", duration_s=0)
    with pytest.raises(ValueError):
        run_traffic("http://127.0.0.1:1", duration_s=1, concurrency=0)
