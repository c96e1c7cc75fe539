"""Helpers for integration tests that run real app processes.

Kept as a plain module (tests/conftest.py cannot be imported): ports, a process
context manager that always kills its process group, and /metrics parsing.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support import port_open

VENV_BIN = Path(sys.executable).parent
INSTRUMENT = str(VENV_BIN / "opentelemetry-instrument")
UVICORN = str(VENV_BIN / "uvicorn")


def base_env(app_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited OTEL_*/MYSTOCKS_* settings, the app dir importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "MYSTOCKS_OTEL_"))}
    env["PYTHONPATH"] = str(app_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class AppProcess:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_port(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output()}")
            if port_open("127.0.0.1", port, 0.2):
                return
            time.sleep(0.05)
        raise AssertionError(f"port {port} not open within {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM the group; returns seconds until the main process exited (SIGKILL after)."""
        started = time.monotonic()
        _signal_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - started
        _signal_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return elapsed


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def run_process(argv: list[str], cwd: Path, env: dict[str, str]):
    """Start ``argv`` in its own session; output goes to a file (no pipe can fill up)."""
    log = Path(cwd) / f"process-{time.monotonic_ns()}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    app = AppProcess(proc, log)
    try:
        yield app
    finally:
        app.terminate(timeout=10)


def uvicorn_argv(target: str, port: int, *extra: str, instrument: bool = True) -> list[str]:
    argv = [UVICORN, target, "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]
    return [INSTRUMENT, *argv] if instrument else argv


#: A one-route app set up with the one line (written to a file a server process imports).
PING_APP = '''
from fastapi import FastAPI
import mystocks_otel

app = FastAPI()
mystocks_otel.setup_telemetry(app)


@app.get("/ping")
def ping():
    return "pong"
'''


def request(port: int, path: str, headers: dict | None = None,
            timeout: float = 30.0) -> tuple[int, bytes]:
    """One GET with ``headers``: (status, raw body), whatever the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(port: int, path: str = "/metrics") -> str:
    status, body = get(port, path)
    assert status == 200, f"GET {path} -> {status}: {body[:500]}"
    return body


def samples(text: str) -> list:
    """Every sample in a Prometheus exposition: (name, labels, value)."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def series(text: str, name: str) -> list:
    return [s for s in samples(text) if s.name == name]
