"""The stack's ports and readiness (mystocks_otel_dev.stack.processes): no port twice, and a
part answered on its port by something else fails with one line.

A live ``stack up`` once failed because the sink's SMTP port was also prometheus-a's (ports
were picked by binding port 0 and closing, one at a time): a plan's ports are now chosen
together and held until each part starts, outside the ephemeral range clients draw from, and
readiness checks that the listener on a part's port is the part itself.
"""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
import time

import pytest
from support import free_port

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import PortLease, ProcessError, Processes, Spec

BANNER = b"220 mystocks-otel sink ESMTP\r\n"


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_plan_of_many_ports_gets_no_duplicates_while_held():
    low, high = processes.port_range()
    with PortLease([f"part{i}" for i in range(300)]) as lease:
        ports = list(lease.ports.values())
        assert len(set(ports)) == 300
        assert all(low <= port <= high for port in ports)
        # Held: nobody else (another plan, a client, free_port) can take one meanwhile.
        assert not any(bindable(port) for port in ports)
        assert not set(ports) & {free_port() for _ in range(50)}
        with PortLease([f"other{i}" for i in range(300)]) as other:
            assert not set(ports) & set(other.ports.values())
        lease.release(ports[0])
        assert bindable(ports[0]) and lease.held() == sorted(ports[1:])
    assert all(bindable(port) for port in ports)


def test_a_concurrent_plan_in_another_process_gets_other_ports():
    code = ("import json; from mystocks_otel_dev.stack.processes import PortLease; "
            "print(json.dumps(list(PortLease(range(300)).ports.values())))")
    with PortLease(range(300)) as lease:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        theirs = json.loads(done.stdout)
        assert len(set(theirs)) == 300
        assert not set(theirs) & set(lease.ports.values())


def test_ports_are_chosen_outside_the_ephemeral_range(tmp_path):
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    assert processes.port_range(str(ranges)) == (processes.PORT_FLOOR, 32767)
    ranges.write_text("10500 60999\n")  # too little below: above it
    assert processes.port_range(str(ranges)) == (61000, 65535)
    low, high = map(int, open(processes.EPHEMERAL_RANGE_FILE).read().split())
    with PortLease(range(50)) as lease:
        assert not any(low <= port <= high for port in lease.ports.values())


@pytest.fixture
def banner_server():
    """A plain TCP server on a free port that greets like the sink's SMTP side."""
    class Greet(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(BANNER)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Greet)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_readiness_on_an_smtp_banner_is_not_ready_and_does_not_raise(banner_server):
    assert processes.http_ok(f"http://127.0.0.1:{banner_server}/-/ready") is False


def test_a_part_whose_port_is_taken_fails_before_it_starts(tmp_path, banner_server):
    spec = Spec("prometheus-a", ["sleep", "30"], port=banner_server,
                ready_url=f"http://127.0.0.1:{banner_server}/-/ready")
    with Processes(tmp_path) as procs:
        with pytest.raises(ProcessError) as raised:
            procs.start(spec)
        assert procs.failed and procs["prometheus-a"].state == "failed"
        assert procs["prometheus-a"].pid is None  # never started
    line = str(raised.value)
    assert line.startswith(f"prometheus-a: port {banner_server} is taken by something else (pid ")
    assert "\n" not in line


def test_a_part_answered_by_another_server_fails_fast_with_one_line(tmp_path):
    """The clash appears while the part starts (it never binds; another server does)."""
    port = free_port()
    spec = Spec("prometheus-a", ["sleep", "30"], port=port, ready_url=f"http://127.0.0.1:{port}/-/ready",
                start_timeout=30)
    with Processes(tmp_path) as procs:
        proc = procs.start(spec, wait=False)
        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", port))
            stranger.listen()
            threading.Thread(target=lambda: stranger.accept()[0].sendall(BANNER), daemon=True).start()
            began = time.monotonic()
            with pytest.raises(ProcessError) as raised:
                procs.wait_ready(proc)
        assert time.monotonic() - began < 10  # not the 30 s deadline
        assert not proc.alive() and proc.state == "failed"
    assert str(raised.value).startswith(f"prometheus-a: port {port} is taken by something else (pid ")


def test_prometheus_on_the_sinks_smtp_port_is_reported_as_a_clash(tmp_path, prometheus_binary):
    """The live failure, with the real parts: prometheus-a given the sink's SMTP port."""
    with PortLease(["http", "smtp"]) as ports:
        http_port, smtp_port = ports["http"], ports["smtp"]
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    with Processes(tmp_path) as procs:
        sink = procs.start(processes.sink(tmp_path / "notifications.jsonl", http_port, smtp_port))
        prom = processes.prometheus(tmp_path / "prometheus.yml", tmp_path / "prom", smtp_port,
                                    name="prometheus-a", binary=prometheus_binary)
        with pytest.raises(ProcessError) as raised:
            procs.start(prom)
        assert sink.alive()
    line = str(raised.value)
    assert line.startswith(f"prometheus-a: port {smtp_port} is taken by something else (pid {sink.pid}: ")
    assert "mystocks_otel_dev.stack.sink" in line and "\n" not in line


def test_a_part_on_its_own_port_passes_the_identity_check(tmp_path):
    """The sink on its leased ports: ready, and its ports are its own."""
    with PortLease(["http", "smtp"]) as ports:
        spec = processes.sink(tmp_path / "notifications.jsonl", ports["http"], ports["smtp"])
        ports.release(ports["http"], ports["smtp"])
        with Processes(tmp_path) as procs:
            sink = procs.start(spec)
            assert sink.state == "up" and sink.port_taken([sink.port, *sink.ports]) is None
            assert processes.port_holder(sink.port) is not None  # to anyone else it is taken
