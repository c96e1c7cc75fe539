"""Issue 13, rows 4, 5 and 10: the standalone metrics port (``OTEL_EXPORTER_PROMETHEUS_PORT``)
never takes the app down, stays reachable through worker recycling, and yields to the app's port.

Real servers: uvicorn under a real ``ulimit -n 1024`` (``prlimit``), gunicorn with UvicornWorkers
and ``--max-requests 40``, and uvicorn/gunicorn told to use the app's own port for metrics.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from harness import PING_APP, VENV_BIN, base_env, request, run_process, uvicorn_argv
from support import free_port, require, wait_until

pytestmark = pytest.mark.live

GUNICORN = str(VENV_BIN / "gunicorn")
WORKERS_APP = Path(__file__).parent / "apps" / "workers_app.py"
def ok(port: int, path: str, timeout: float = 5.0) -> bool:
    try:
        return request(port, path, timeout=timeout)[0] == 200
    except OSError:
        return False


# -- row 4: a slowloris on the metrics port under ulimit -n 1024 ---------------------------------

class Slowloris:
    """``count`` connections, each holding the server with a request head it never finishes:
    a request line, then one header byte every half second. A connection the server closes is
    opened again at once, for as long as the attack lasts (32 threads open them)."""

    def __init__(self, port: int, count: int, threads: int = 32):
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._attack, args=(count // threads + 1,), daemon=True)
                        for _ in range(threads)]
        self.held: dict[int, int] = {}  # thread -> connections it holds now

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=3)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def _attack(self, share: int) -> None:
        socks: list[socket.socket] = []
        me = threading.get_ident()
        next_trickle = time.monotonic() + 0.5
        while not self.stop.is_set():
            if len(socks) < share:
                sock = self._connect()
                if sock is not None:
                    socks.append(sock)
            elif not self.stop.wait(0.1):
                pass
            if time.monotonic() >= next_trickle or len(socks) >= share:
                next_trickle = time.monotonic() + 0.5
                for sock in list(socks):
                    try:
                        sock.send(b"X")
                        if sock.recv(1, socket.MSG_PEEK) == b"":
                            raise OSError  # closed by the server: opened again above
                    except BlockingIOError:
                        pass
                    except OSError:
                        sock.close()
                        socks.remove(sock)
            self.held[me] = len(socks)
        for sock in socks:
            sock.close()

    @property
    def open(self) -> int:
        return sum(self.held.values())

    def __enter__(self) -> "Slowloris":
        for thread in self.threads:
            thread.start()
        # the attack is on once it held ``count`` connections, or after 30 s of trying
        deadline = time.monotonic() + 30
        while self.open < self.count and time.monotonic() < deadline:
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_a_slowloris_on_the_metrics_port_never_hurts_the_app_under_ulimit_1024(tmp_path):
    require(shutil.which("prlimit") is not None, "prlimit (util-linux) is needed for a real ulimit")
    (tmp_path / "ping_app.py").write_text(PING_APP)
    port, metrics = free_port(), free_port()
    env = base_env(tmp_path, OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics), MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    argv = ["prlimit", "--nofile=1024:1024", "--", *uvicorn_argv("ping_app:app", port, instrument=False)]
    with run_process(argv, tmp_path, env) as proc:
        proc.wait_port(port)
        proc.wait_port(metrics)
        server = psutil.Process(proc.proc.pid)
        assert server.rlimit(psutil.RLIMIT_NOFILE) == (1024, 1024)
        with Slowloris(metrics, 1100):
            during_app, during_scrapes = [], []
            for _ in range(10):
                during_app.append(ok(port, "/ping"))
                # a scrape waits in the listen queue behind the attack's reconnects: 10 s is
                # Prometheus' default scrape_timeout (5 s failed once on a loaded CI machine)
                during_scrapes.append(ok(metrics, "/metrics/health", timeout=10))
                time.sleep(0.3)
            fds = server.num_fds()
        assert all(during_app), f"the app's own port failed during the slowloris: {during_app}"
        assert all(during_scrapes), f"legitimate scrapes failed during the slowloris: {during_scrapes}"
        assert fds < 300, f"the metrics port holds {fds} descriptors"
        assert wait_until(lambda: ok(metrics, "/metrics") and ok(port, "/ping"), timeout=20,
                          what="scrapes after the slowloris")
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_500_parallel_scrapes_all_answer(tmp_path):
    (tmp_path / "ping_app.py").write_text(PING_APP)
    port, metrics = free_port(), free_port()
    env = base_env(tmp_path, OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics), MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("ping_app:app", port, instrument=False), tmp_path, env) as proc:
        proc.wait_port(port)
        proc.wait_port(metrics)
        with ThreadPoolExecutor(500) as pool:
            results = list(pool.map(lambda _: ok(metrics, "/metrics", timeout=30), range(500)))
        assert results.count(True) == 500, f"{results.count(False)} of 500 parallel scrapes failed"


# -- row 5: gunicorn -w 3 --max-requests 40 ------------------------------------------------------

def test_the_port_stays_reachable_through_gunicorn_worker_recycling(tmp_path):
    shutil.copy(WORKERS_APP, tmp_path / "workers_app.py")
    port, metrics = free_port(), free_port()
    env = base_env(tmp_path, OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics),
                   MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore")
    argv = [GUNICORN, "workers_app:app", "-w", "3", "-k", "uvicorn.workers.UvicornWorker",
            "-b", f"127.0.0.1:{port}", "--max-requests", "40", "--graceful-timeout", "3"]
    with run_process(argv, tmp_path, env) as proc:
        proc.wait_port(port, timeout=30)
        proc.wait_port(metrics, timeout=30)
        stop, pids, sent = threading.Event(), set(), [0]

        def traffic():
            while not stop.is_set():
                try:
                    status, body = request(port, f"/work/{sent[0]}", timeout=10)
                    if status == 200:
                        pids.add(json.loads(body)["pid"])
                        sent[0] += 1
                    time.sleep(0.02)  # ~40 requests a second: a worker lives a few seconds
                except Exception:  # noqa: BLE001 - a worker that stops mid-request: next one
                    time.sleep(0.01)

        threads = [threading.Thread(target=traffic, daemon=True)]
        for thread in threads:
            thread.start()
        results = []
        try:
            while len(results) < 400 or len(pids) < 3 + 8:  # at least eight recycled workers
                results.append(ok(metrics, "/metrics", timeout=5))
                time.sleep(0.01)
                assert len(results) < 5000, f"workers did not recycle: {len(pids)} pids"
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
        rate = results.count(True) / len(results)
        print(f"{len(results)} scrapes, {rate:.2%} answered, {len(pids)} workers, {sent[0]} requests")
        assert rate >= 0.99, f"only {rate:.2%} of {len(results)} scrapes answered over {len(pids)} workers"
        assert wait_until(lambda: ok(metrics, "/metrics"), timeout=10, what="a scrape after the load")
        assert all(ok(metrics, "/metrics") for _ in range(20)), "refusing after the load ended"


# -- row 10: the metrics port is the app's own port ----------------------------------------------

def clash_argv(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return uvicorn_argv("workers_app:app", port, instrument=False)
    if server == "uvicorn-workers":
        return uvicorn_argv("workers_app:app", port, "--workers", "2", instrument=False)
    return [GUNICORN, "workers_app:app", "-w", "2", "-k", "uvicorn.workers.UvicornWorker",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3"]


@pytest.mark.parametrize("server", ["uvicorn", "uvicorn-workers", "gunicorn"])
def test_the_apps_port_wins_and_one_line_names_the_variable(tmp_path, server):
    shutil.copy(WORKERS_APP, tmp_path / "workers_app.py")
    port = free_port()
    env = base_env(tmp_path, OTEL_EXPORTER_PROMETHEUS_PORT=str(port), MYSTOCKS_OTEL_SYSTEM_METRICS="false",
                   PYTHONWARNINGS="ignore")
    with run_process(clash_argv(server, port), tmp_path, env) as proc:
        proc.wait_port(port, timeout=30)
        status, body = request(port, "/work/1", timeout=5.0)
        assert status == 200 and b"pid" in body, (status, body)
        workers = 1 if server == "uvicorn" else 2
        lines = wait_until(lambda: [line for line in proc.output().splitlines()
                                    if "OTEL_EXPORTER_PROMETHEUS_PORT" in line] or None,
                           timeout=15, what="the clash line", proc=proc.proc)
        time.sleep(1.0)
        lines = [line for line in proc.output().splitlines() if "OTEL_EXPORTER_PROMETHEUS_PORT" in line]
        assert 1 <= len(lines) <= workers, lines
        assert all(str(port) in line and "app" in line for line in lines), lines
        for _ in range(10):
            assert request(port, "/work/2", timeout=5.0)[0] == 200  # still the app's, on every worker
        assert request(port, "/metrics", timeout=5.0)[0] == 200  # ours on the app's port, as always
        assert proc.proc.poll() is None, proc.output()[-3000:]
