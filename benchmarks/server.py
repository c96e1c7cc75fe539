"""A real uvicorn serving one of :mod:`benchmarks.apps`' factories, on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_ready(process: subprocess.Popen, port: int, log, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"uvicorn exited with {process.returncode}: "
                               f"{log.read().decode(errors='replace')[-2000:]}")
        try:
            if get(port, "/ping", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"uvicorn on port {port} not ready after {timeout} s")


def _cpu_seconds(processes) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _wait_settled(process: subprocess.Popen, workers: int, timeout: float = 60.0) -> None:
    """Until every worker exists and the server's processes have stopped starting up.

    One answer to ``/ping`` only proves that one worker is up; the others may still be
    importing. Settled: all workers are there and the whole tree used under 10% of a CPU
    for a quarter of a second.
    """
    parent = psutil.Process(process.pid)
    expected = 1 if workers == 1 else 1 + workers  # --workers N > 1: a supervisor and N workers
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        tree = [parent, *parent.children(recursive=True)]
        used = _cpu_seconds(tree)
        if previous is not None and len(tree) >= expected and used - previous < 0.025:
            return
        previous = used
        time.sleep(0.25)
    raise RuntimeError(f"uvicorn --workers {workers} did not settle in {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it holds the workers), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def uvicorn(factory: str, workers: int = 1, env: dict | None = None):
    """Yield the port of ``uvicorn benchmarks.apps:<factory> --factory`` once it answers."""
    port = free_port()
    environment = {**os.environ, "MYSTOCKS_OTEL_SYSTEM_METRICS": "false", **(env or {})}
    command = [sys.executable, "-m", "uvicorn", f"benchmarks.apps:{factory}", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "warning", "--no-access-log"]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would block it
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                   stderr=log, start_new_session=True)
        try:
            _wait_ready(process, port, log)
            _wait_settled(process, workers)
            yield port
        finally:
            _stop(process)
