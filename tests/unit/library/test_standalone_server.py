"""Issue 13, row 4, in one process: the standalone port's server is bounded.

A GET with a body is answered once (the body is never read as a second request), a request head
that never ends is closed after the header timeout, at most MAX_CONNECTIONS are open at once and
a slow one gives way to a new one, and the listen queue is a real one.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time

import pytest

from mystocks_otel._internal import standalone
from mystocks_otel.testing import capture_metrics
from support import free_port


@pytest.fixture
def port(monkeypatch):
    monkeypatch.setattr(standalone, "HEADER_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(standalone, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(standalone, "EVICT_AFTER_SECONDS", 0.3)
    with capture_metrics():
        number = free_port()
        handle = standalone.serve("127.0.0.1", number, wait_for_app=False)
        assert handle.outcome == "serving"
        try:
            yield number
        finally:
            standalone.stop()


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_get_with_a_body_is_answered_once_and_closed(port):
    smuggled = b"GET /metrics/list HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics/health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % len(smuggled) + smuggled)
        data = read_all(sock)
    assert data.count(b"HTTP/1.1 ") == 1, data[:400]
    assert data.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in data


def test_a_request_head_that_never_ends_is_closed_after_the_timeout(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(20):  # a slowloris: one byte at a time, the head never ends
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.1)
        assert read_all(sock) == b""
    assert time.monotonic() - started < 5


def test_open_connections_are_bounded_and_slow_ones_give_way(port):
    slow = []
    for _ in range(40):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    time.sleep(0.5)
    held = [s for s in standalone_connections()]
    assert len(held) <= standalone.MAX_CONNECTIONS
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # a scrape still gets in
    conn.request("GET", "/metrics/health")
    assert conn.getresponse().status == 200
    for sock in slow:
        sock.close()


def standalone_connections():
    from mystocks_otel._internal import state

    return list(state.metrics_server().server._connections.values())


def test_the_listen_queue_is_a_real_one(port):
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is needed to read a listen queue's length")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    backlog = int(out.split()[2])  # Send-Q of a listening socket: its backlog
    assert backlog >= 128, out


def test_a_header_larger_than_the_limit_is_a_431(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + b"A" * 40_000 + b"\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")
