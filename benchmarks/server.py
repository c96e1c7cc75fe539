"""A real uvicorn serving one of :mod:`benchmarks.apps`' factories, on 127.0.0.1."""

from __future__ import annotations

import http.client
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "free_port", "get", "uvicorn"]


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _cpu_seconds(processes) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _wait_settled(pid: int, workers: int, timeout: float = 60.0) -> None:
    """Until every worker exists and the server's processes have stopped starting up.

    One answer to ``/ping`` only proves that one worker is up; the others may still be
    importing. Settled: all workers are there and the whole tree used under 10% of a CPU
    over a quarter of a second (the poll interval is the measuring window).
    """
    parent = psutil.Process(pid)
    expected = 1 if workers == 1 else 1 + workers  # --workers N > 1: a supervisor and N workers
    previous: list[float] = []

    def settled() -> bool:
        tree = [parent, *parent.children(recursive=True)]
        used = _cpu_seconds(tree)
        quiet = bool(previous) and len(tree) >= expected and used - previous[-1] < 0.025
        previous.append(used)
        return quiet

    try:
        wait_until(settled, timeout, f"uvicorn --workers {workers} settled", interval=0.25)
    except TimeoutError:
        raise RuntimeError(f"uvicorn --workers {workers} did not settle in {timeout} s") from None


@contextmanager
def uvicorn(factory: str, workers: int = 1, env: dict | None = None):
    """Yield the port of ``uvicorn benchmarks.apps:<factory> --factory`` once it answers and
    its workers have settled; the process harness starts and stops it (its whole group)."""
    spec = processes.uvicorn(f"benchmarks.apps:{factory}", None, "--factory", "--workers", str(workers),
                             "--log-level", "warning", "--no-access-log", name="uvicorn", ready_path="/ping",
                             env={"MYSTOCKS_OTEL_SYSTEM_METRICS": "false", **(env or {})}, cwd=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="mystocks-bench-") as workdir, Processes(workdir) as procs:
        proc = procs.start(spec)
        _wait_settled(proc.pid, workers)
        yield proc.port
