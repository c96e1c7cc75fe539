"""Load on 127.0.0.1: ``wrk`` when installed, else a bounded asyncio keep-alive generator.

Both are closed-loop: ``connections`` clients each send ``GET /ping`` (or another ``path``) as
soon as the previous answer arrives, for ``seconds``. They report requests per second and latency percentiles.
:func:`paced_with_scrapes` is the scrape-under-load row: paced requests, time-stamped one by
one, while another process scrapes ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import time

from . import server

PATH = "/ping"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


GENERATORS = ("auto", "wrk", "python")


def resolve(generator: str = "auto") -> str:
    """``wrk`` or ``python``: ``auto`` takes wrk when it is on PATH."""
    if generator == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if generator == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk), or use --generator python")
    return generator


def run(port: int, seconds: float, connections: int, generator: str = "auto", path: str = PATH) -> dict:
    """``{"rps", "p50_ms", "p99_ms", "requests"}`` for ``seconds`` of closed-loop load."""
    if resolve(generator) == "wrk":
        return _wrk(port, seconds, connections, path)
    return asyncio.run(_closed_loop(port, seconds, connections, path))


# -- wrk ----------------------------------------------------------------------------------------------

def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict:
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE).group(1))
    requests = int(re.search(r"^\s+(\d+) requests in", output, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", output)
    if errors:
        raise RuntimeError(f"wrk saw errors: {errors.group(0)}")
    return {"rps": rps, "p50_ms": _milliseconds(percentiles["50"]),
            "p99_ms": _milliseconds(percentiles["99"]), "requests": requests}


def _wrk(port: int, seconds: float, connections: int, path: str = PATH) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               f"http://127.0.0.1:{port}{path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                            check=True)
    return parse_wrk(result.stdout)


# -- the asyncio generator ------------------------------------------------------------------------------

def _request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


async def _request(reader, writer, request: bytes) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{request.split(b' HTTP')[0].decode()} answered {head[:40]!r}")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    await reader.readexactly(length)


async def _client(port: int, keep_going, latencies: list, pace: float = 0.0, path: str = PATH) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _request_bytes(path)
    try:
        while keep_going():
            started = time.perf_counter()
            await _request(reader, writer, request)
            finished = time.perf_counter()
            latencies.append((started, finished))
            if pace:
                await asyncio.sleep(max(0.0, pace - (finished - started)))  # pacing: the load's rate
    finally:
        writer.close()


def _summary(latencies: list, seconds: float) -> dict:
    durations = sorted((end - start) * 1e3 for start, end in latencies)
    return {"rps": len(durations) / seconds, "p50_ms": statistics.median(durations),
            "p99_ms": durations[min(len(durations) - 1, int(len(durations) * 0.99))],
            "requests": len(durations)}


async def _closed_loop(port: int, seconds: float, connections: int, path: str = PATH) -> dict:
    latencies: list = []
    until = time.perf_counter() + seconds
    keep_going = lambda: time.perf_counter() < until  # noqa: E731
    await asyncio.gather(*(_client(port, keep_going, latencies, path=path) for _ in range(connections)))
    return _summary(latencies, seconds)


# -- a scrape under load --------------------------------------------------------------------------------

def _scrape_timed(port: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    status, body = server.get(port, "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    return started, time.perf_counter(), len(body)


def _server_render_ms(port: int) -> float | None:
    """The last render's own duration, as ``/metrics/health`` reports it (None if it does not)."""
    try:
        status, body = server.get(port, "/metrics/health")
        seconds = json.loads(body)["last_collection"]["duration_seconds"] if status == 200 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if seconds is None else float(seconds) * 1e3


def scrape_alone(port: int, count: int) -> dict:
    """With nothing else running: milliseconds per ``/metrics`` scrape (client side, body
    included) and per render (server side, when ``/metrics/health`` tells)."""
    scrape_ms, render_ms = [], []
    for _ in range(count):
        start, end, _size = _scrape_timed(port)
        scrape_ms.append((end - start) * 1e3)
        render_ms.append(_server_render_ms(port))
    return {"scrape_ms": scrape_ms,
            "render_ms": render_ms if None not in render_ms else None}


def scrape_windows(port: int, scrapes: int, gap_seconds: float) -> list:
    """``[(start, end, bytes)]`` of ``scrapes`` scrapes, ``gap_seconds`` apart (CLOCK_MONOTONIC)."""
    windows = []
    time.sleep(gap_seconds)  # pacing, the behaviour measured: scrapes gap_seconds apart
    for _ in range(scrapes):
        windows.append(_scrape_timed(port))
        time.sleep(gap_seconds)  # pacing (as above)
    return windows


def paced_with_scrapes(port: int, scrapes: int, connections: int = 4, pace_ms: float = 5.0,
                       gap_seconds: float = 0.3) -> dict:
    """Paced ``GET /ping`` on ``connections`` clients while ``scrapes`` scrapes run, one by one.

    For each scrape, the stall is how much longer than usual the slowest request that
    overlapped it took: its latency minus the median latency of the requests that overlapped
    no scrape. Requests are paced well below capacity, so a slow one means the server stopped
    answering, not a queue. The scraper is a process of its own, so that its work cannot
    delay this process's clients (``perf_counter`` is CLOCK_MONOTONIC, shared by both).
    """
    scraper = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.loadgen", str(port), str(scrapes), str(gap_seconds)],
        cwd=server.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    latencies: list = []

    async def load():
        deadline = time.perf_counter() + 120  # bounded even if a scrape hangs
        keep_going = lambda: scraper.poll() is None and time.perf_counter() < deadline  # noqa: E731
        await asyncio.gather(*(_client(port, keep_going, latencies, pace_ms / 1e3)
                               for _ in range(connections)))

    try:
        asyncio.run(load())
        out, err = scraper.communicate(timeout=60)
    finally:
        if scraper.poll() is None:
            scraper.kill()
            scraper.wait()
    if scraper.returncode != 0:
        raise RuntimeError(f"the scraper failed: {err.decode(errors='replace')[-2000:]}")
    windows = json.loads(out)
    quiet = [(e - s) * 1e3 for s, e in latencies
             if not any(s < w_end and e > w_start for w_start, w_end, _ in windows)]
    quiet_ms = statistics.median(quiet) if quiet else 0.0
    slowest, scrape_ms = [], []
    for start, end, _size in windows:
        overlapping = [(e - s) * 1e3 for s, e in latencies if s < end and e > start]
        slowest.append(max(overlapping, default=quiet_ms))
        scrape_ms.append((end - start) * 1e3)
    return {"stall_ms": [max(0.0, ms - quiet_ms) for ms in slowest], "slowest_ms": slowest,
            "quiet_p50_ms": quiet_ms, "scrape_under_load_ms": scrape_ms,
            "bytes": windows[-1][2], "requests": len(latencies)}


if __name__ == "__main__":  # the scraper process of paced_with_scrapes
    print(json.dumps(scrape_windows(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))))
