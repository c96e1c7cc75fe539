"""Helpers for the demo tests (a module, not conftest, so tests can import it by name)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
from support import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def uvicorn_demo(env: dict[str, str], factory: str = "mystocks_otel_dev.demo.app:create_app",
                 log_path: Path | None = None, startup_timeout: float = 20.0):
    """A real uvicorn serving the demo on a free port, in its own process; yields the base URL."""
    port = free_port()
    full_env = {**os.environ, **env}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {proc.returncode}"
                                     + (f": {log_path.read_text()[-2000:]}" if log_path else ""))
            try:
                return httpx.get(base + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, startup_timeout, "uvicorn serving /health")
        yield base
    finally:
        stop_process(proc)
        if log_path:
            log.close()
