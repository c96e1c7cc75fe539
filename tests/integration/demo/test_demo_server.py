"""serve(): uvicorn on the instrumented factory, printing where everything is; and the plain app."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from mystocks_otel_dev.demo.server import serve, urls
from mystocks_otel_dev.stack.processes import Processes, Spec
from demo_support import ROOT, uvicorn_demo
from support import free_port


def test_urls_name_every_endpoint():
    shown = urls("0.0.0.0", 8123)
    assert shown["Metrics"] == "http://127.0.0.1:8123/metrics"
    assert shown["Quote feed (WebSocket)"] == "ws://127.0.0.1:8123/ws/quotes"
    for path in ("/docs", "/metrics/health", "/metrics/list", "/admin/faults"):
        assert any(u.endswith(path) for u in shown.values()), path


def test_reload_needs_the_factory():
    with pytest.raises(ValueError, match="reload needs factory=True"):
        serve(reload=True, factory=False)


def test_serve_runs_the_instrumented_demo(tmp_path, throwaway_redis):
    """`mystocks-otel demo` (the CLI that calls serve()), run by the process harness."""
    port = free_port()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "REDIS_URL": throwaway_redis["url"],
           "PYTHONUNBUFFERED": "1"}
    base = f"http://127.0.0.1:{port}"
    spec = Spec("demo", [sys.executable, "-m", "mystocks_otel.cli", "demo", "--port", str(port)], url=base,
                port=port, ready_url=f"{base}/health", env=env, cwd=str(ROOT), start_timeout=30)
    with Processes(tmp_path / "procs") as procs:
        proc = procs.start(spec)
        assert httpx.get(base + "/metrics", timeout=5).status_code == 200
        assert httpx.get(base + "/metrics/list", timeout=5).status_code == 200
        printed = Path(proc.log).read_text()
        for url in urls("127.0.0.1", port).values():
            assert url in printed


def test_plain_app_serves_without_telemetry(tmp_path, throwaway_redis):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "REDIS_URL": throwaway_redis["url"]}
    with uvicorn_demo(env, factory="mystocks_otel_dev.demo.app:create_plain_app") as base:
        assert httpx.get(base + "/api/quotes/AAPL", timeout=5).status_code == 200
        assert httpx.get(base + "/metrics", timeout=5).status_code == 404, "no setup_telemetry call"
