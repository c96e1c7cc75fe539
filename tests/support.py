"""Small helpers every test folder shares: free ports, bounded waits, stopping processes.

``tests/`` is on ``sys.path`` (pytest puts the root conftest's folder there), so any test
module can ``from support import ...``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.runner import project_root

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The checkout whose files the tests read, found as the stack finds it: MYSTOCKS_OTEL_ROOT,
#: else the nearest folder at or above tests/ that holds alerts/, prometheus/ and collector/.
ROOT = project_root(Path(__file__).resolve().parent)


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI (a test module imports this: ``from support import require``)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A free port on 127.0.0.1: the process harness's (chosen outside the ephemeral range that
    clients draw from, never one this test process handed out before). To hold several until
    their servers start, use ``processes.PortLease``."""
    return processes.free_port()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.1,
               proc: subprocess.Popen | None = None):
    """Poll ``predicate`` until it returns something truthy, and return that: the process
    harness's wait, as a test failure.

    An ``OSError`` from the predicate counts as "not yet" (a server still starting).
    Fails after ``timeout`` seconds, or at once when ``proc`` has exited.
    """
    def check():
        try:
            result = predicate()
        except OSError:
            result = None
            if proc is None:
                raise
        if not result and proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        return result

    try:
        return processes.wait_until(check, timeout, what, interval)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def raw_status(port: int, request: bytes, timeout: float = 30.0) -> int | None:
    """Send ``request`` byte for byte; the status code of the answer, or None if the server
    closed the connection without one (for malformed input no HTTP client would send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    return int(data.split(b" ", 2)[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    wait_until(lambda: port_open(host, port, 0.2), timeout, f"{host}:{port} to open", 0.05)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate, then kill if it will not go: a test must never leave a server behind."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_stable(read, timeout: float = 10.0, what: str = "a stable reading", interval: float = 0.5,
                accept=lambda value: True):
    """Poll ``read()`` until two readings ``interval`` apart are equal and ``accept``-ed (a
    server that learns of things asynchronously has settled), and return that reading.

    After ``timeout`` the last reading is returned, so the caller's assert shows what it was.
    """
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        current = read()
        if accept(current) and current == previous:
            return current
        previous = current if accept(current) else None
        if time.monotonic() >= deadline:
            return current
        time.sleep(interval)


def holds_for(predicate, seconds: float, what: str = "condition", interval: float = 0.1) -> None:
    """Assert that ``predicate()`` stays true for ``seconds`` (nothing wrong arrives in a quiet
    period). The duration is the point of the check; it fails as soon as the predicate does."""
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            raise AssertionError(f"{what} stopped holding within {seconds}s")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
