"""Several workers, one /metrics: real uvicorn --workers 3 and gunicorn with three UvicornWorkers.

After N requests every one of nine scrapes (each reaching whichever worker the kernel picks)
says N; after SIGKILL of a worker that served requests, and M more requests, every scrape says
N + M: the dead worker's counts are kept (compacted into the run's ``dead.totals``), and the
replacement adds its own.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from harness import VENV_BIN, base_env, get, run_process, scrape, series, uvicorn_argv
from support import free_port, wait_until

pytestmark = pytest.mark.live

APP = Path(__file__).parent / "apps" / "workers_app.py"
ROUTE = "/work/{n}"
GUNICORN = str(VENV_BIN / "gunicorn")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    shutil.copy(APP, tmp_path / "workers_app.py")
    return tmp_path


def run_directory(master: int) -> str | None:
    """The run directory of the server whose master is ``master`` (None before set-up)."""
    base = f"mystocks-otel.{os.getuid()}/{master}-*"
    found = glob.glob(f"/dev/shm/{base}") or glob.glob(f"/tmp/{base}")
    assert len(found) <= 1, found
    return found[0] if found else None


def worker_files(master: int) -> list[str]:
    """The data files of the live (or not yet compacted) workers of the run."""
    found = run_directory(master)
    return sorted(glob.glob(os.path.join(found, "*.db"))) if found else []


def file_pids(master: int) -> set[int]:
    return {int(os.path.basename(path).split("-")[1]) for path in worker_files(master)}


def request(port: int, n: int, block: float = 0.0) -> int:
    status, body = get(port, f"/work/{n}?block={block}")
    assert status == 200, body
    return json.loads(body)["pid"]


def send_until_spread(port: int, at_least: int, workers: int = 2, limit: int = 400) -> tuple[int, dict]:
    """Send requests, six at a time (each blocks its worker's loop for 20 ms, so the kernel
    hands the others to other workers), until ``workers`` processes served some and at least
    ``at_least`` were sent. Returns (requests sent, {pid: requests served})."""
    served: dict[int, int] = {}
    sent = 0
    with ThreadPoolExecutor(6) as pool:
        while sent < limit and (sent < at_least or len(served) < workers):
            for pid in pool.map(lambda i: request(port, i, 0.02), range(sent, sent + 6)):
                served[pid] = served.get(pid, 0) + 1
            sent += 6
    assert len(served) >= workers, f"only {served} served {sent} requests"
    return sent, served


def totals(port: int) -> tuple[float, float]:
    text = scrape(port)
    orders = sum(s.value for s in series(text, "mystocks_trading_orders_total"))
    requests = sum(s.value for s in series(text, "http_server_request_duration_seconds_count")
                   if s.labels.get("http_route") == ROUTE)
    buckets = [s for s in series(text, "http_server_request_duration_seconds_bucket")
               if s.labels.get("http_route") == ROUTE and s.labels["le"] == "+Inf"]
    assert sum(s.value for s in buckets) == requests  # histograms merged bucket by bucket
    return orders, requests


def crashes(port: int) -> list[float]:
    """``mystocks_system_worker_crashes_total``: workers that died without shutting down."""
    return [s.value for s in series(scrape(port), "mystocks_system_worker_crashes_total")]


def scrape_openmetrics(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def nine_scrapes(port: int, expected: int) -> list[tuple[float, float]]:
    # The ASGI layer records a request's duration just after its response went out: wait
    # (bounded) for the last one to land, then every scrape must agree.
    wait_until(lambda: totals(port) == (expected, expected), what=f"{expected} requests on /metrics")
    return [totals(port) for _ in range(9)]


def argv(server: str, port: int) -> list[str]:
    if server.startswith("uvicorn"):
        zero_code = server == "uvicorn-zero-code"  # opentelemetry-instrument sets the app up
        return uvicorn_argv("workers_app:app", port, "--workers", "3", instrument=zero_code)
    preload = ["--preload"] if server == "gunicorn-preload" else []
    return [GUNICORN, "workers_app:app", "-w", "3", "-k", "uvicorn.workers.UvicornWorker",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3", *preload]


@pytest.mark.parametrize("server", ["uvicorn", "uvicorn-zero-code", "gunicorn", "gunicorn-preload"])
def test_every_scrape_sums_all_workers_and_survives_sigkill(app_dir, server):
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   WORKERS_APP_ZERO_CODE="1" if server == "uvicorn-zero-code" else "0")
    with run_process(argv(server, port), app_dir, env) as proc:
        proc.wait_port(port, timeout=30)
        master = proc.proc.pid
        extra = 1 if server == "gunicorn-preload" else 0  # the arbiter set the app up too
        wait_until(lambda: len(worker_files(master)) == 3 + extra, what="three workers' files",
                   proc=proc.proc)

        # the start-up line of every worker says which mode it is in
        announced = wait_until(lambda: proc.output().count("multiprocess mode: workers of")
                               >= 3 or None, what="three start-up lines", proc=proc.proc)
        assert announced
        n, served = send_until_spread(port, at_least=60)
        assert nine_scrapes(port, n) == [(n, n)] * 9
        page = scrape_openmetrics(port)
        assert page.endswith("# EOF\n")
        merged = {s.name: s.value for f in parse_openmetrics(page) for s in f.samples
                  if s.name == "mystocks_trading_orders_total"}
        assert merged == {"mystocks_trading_orders_total": n}

        assert crashes(port) == [0.0]  # there from the first scrape: increase() sees the first

        victim = max(served, key=served.get)
        before = file_pids(master)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: file_pids(master) - before, what="a replacement worker",
                   proc=proc.proc, timeout=30)
        wait_until(lambda: request(port, 0) != victim, what="requests served again")
        m = 1 + send_until_spread(port, at_least=40)[0]  # the probe above counted once
        assert nine_scrapes(port, n + m) == [(n + m, n + m)] * 9, f"{server}: dead worker {victim} lost counts"
        # the dead worker's file was compacted into dead.totals (and still counts, above)
        assert victim not in file_pids(master)
        assert os.path.exists(os.path.join(run_directory(master), "dead.totals"))
        assert len(worker_files(master)) == 3 + extra
        assert crashes(port) == [1.0], "the SIGKILLed worker is one crash"
        print(f"{server}: N={n} over {len(served)} workers, M={m}")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_recycled_workers_are_not_crashes(app_dir, server):
    """Recycling (uvicorn ``--limit-max-requests``, gunicorn ``--max-requests``) replaces
    every worker, several times: totals stay exact and no crash is counted, because a worker
    that shuts down marks its file (ApiFrequentRestarts adds crashes to server restarts)."""
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   WORKERS_APP_ZERO_CODE="0")
    if server == "uvicorn":
        command = uvicorn_argv("workers_app:app", port, "--workers", "2",
                               "--limit-max-requests", "10", instrument=False)
    else:
        command = [GUNICORN, "workers_app:app", "-w", "2", "-k", "uvicorn.workers.UvicornWorker",
                   "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3", "--max-requests", "10"]
    with run_process(command, app_dir, env) as proc:
        proc.wait_port(port, timeout=30)
        master = proc.proc.pid
        wait_until(lambda: len(worker_files(master)) == 2, what="two workers' files", proc=proc.proc)
        served, n, lost = {}, 0, []
        deadline = time.monotonic() + 120
        # Until both first workers were replaced. A worker past its limit may go on answering for
        # a while as it shuts down (its listener's close fails with EBADF under both servers):
        # a deadline, not a request count, bounds the loop.
        while len(served) < 4:
            # one at a time: a worker at its limit answers the request it has, then leaves
            answer = wait_until(lambda: _work_or_none(port, n, lost), what="a worker answering",
                                proc=proc.proc, timeout=30)
            served[answer["pid"]] = served.get(answer["pid"], 0) + 1
            n += 1
            assert time.monotonic() < deadline, f"workers never recycled: {served}\n{proc.output()[-3000:]}"
        # exact, but for requests a leaving worker may have counted without its answer arriving
        wait_until(lambda: totals(port)[1] >= n, what=f"{n} requests on /metrics")
        orders, requests = totals(port)
        assert orders == requests and n <= requests <= n + len(lost), (orders, requests, n, lost)
        assert crashes(port) == [0.0], f"{len(served)} workers recycled, none crashed"
        # the recycled workers' files were compacted (a scrape does it): only the live two stay
        wait_until(lambda: totals(port) and len(worker_files(master)) == 2,
                   what="the dead workers' files compacted", proc=proc.proc)
        print(f"{server}: {n} requests over {len(served)} workers")


def _work_or_none(port: int, n: int, lost: list) -> dict | None:
    """A request's answer, or None (noted in ``lost``) when the worker it reached was leaving."""
    try:
        status, body = get(port, f"/work/{n}")
    except (OSError, http.client.HTTPException) as error:
        lost.append(type(error).__name__)
        return None
    assert status == 200, body
    return json.loads(body)


def file_names(master: int) -> set[tuple[str, int]]:
    """(name, inode) of each worker file: a file replaced under the same name is new too."""
    found = set()
    for path in worker_files(master):
        try:
            found.add((os.path.basename(path), os.stat(path).st_ino))
        except FileNotFoundError:  # compacted meanwhile
            pass
    return found


def fork_with_pid(master: int, proc, pid: int, victim: int) -> int:
    """SIGKILL ``victim`` with the kernel's next PID set to ``pid``, so that the arbiter's
    replacement worker takes it; retried (killing the replacement) when another fork on the
    machine took it first. Returns how many attempts it took."""
    for attempt in range(1, 41):
        before = file_names(master)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        os.kill(victim, signal.SIGKILL)
        ((new, _),) = wait_until(lambda: file_names(master) - before or None,
                            what="a replacement worker", proc=proc.proc, timeout=30)
        victim = int(new.split("-")[1])
        if victim == pid:
            return attempt
    pytest.fail(f"no replacement worker got PID {pid} in 40 attempts")


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="forcing a PID needs root (/proc/sys/kernel/ns_last_pid)")
def test_a_replacement_worker_with_the_dead_workers_pid_keeps_totals_exact(app_dir):
    """gunicorn, three workers: a worker is SIGKILLed and its replacement gets the same PID
    (forced through ns_last_pid). The dead worker's counts and the replacement's both count."""
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   WORKERS_APP_ZERO_CODE="0")
    with run_process(argv("gunicorn", port), app_dir, env) as proc:
        proc.wait_port(port, timeout=30)
        master = proc.proc.pid
        wait_until(lambda: len(worker_files(master)) == 3, what="three workers' files",
                   proc=proc.proc)
        n, served = send_until_spread(port, at_least=30)
        assert nine_scrapes(port, n) == [(n, n)] * 9
        victim = max(served, key=served.get)
        attempts = fork_with_pid(master, proc, victim, victim)
        # the replacement, with the dead worker's PID, serves requests too
        m, again = 0, {}
        while again.get(victim, 0) < 3:
            sent, spread = send_until_spread(port, at_least=12, workers=1)
            m += sent
            for pid, count in spread.items():
                again[pid] = again.get(pid, 0) + count
            assert m < 2000, f"the replacement {victim} served nothing: {again}"
        assert nine_scrapes(port, n + m) == [(n + m, n + m)] * 9, "PID reuse lost counts"
        print(f"PID {victim} reused after {attempts} attempt(s); N={n}, M={m}, {again}")


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="planting as another user needs root (runuser -u nobody)")
@pytest.mark.parametrize("plant", ["symlink", "directory"])
def test_a_run_directory_planted_by_another_user_never_reaches_metrics(app_dir, plant):
    """uvicorn --workers 2: before the workers start, user nobody plants a symbolic link (to
    a root-owned sticky directory holding a forged dead worker's file: 5,000 orders) or a
    directory of its own at the run directory's predictable path (``mystocks-otel-<master
    pid>-<start time>`` under /dev/shm). Every scrape still says exactly N."""
    from mystocks_otel._internal.multiprocess.detection import start_time
    from test_multiprocess_hardening import as_nobody, forged_dead_worker_file

    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   WORKERS_APP_ZERO_CODE="0")
    sticky = tempfile.mkdtemp(prefix="mystocks-test-sticky-", dir="/dev/shm")
    os.chmod(sticky, 0o1777)
    forged = forged_dead_worker_file()
    # the master stops itself before it becomes uvicorn (exec keeps its PID and start
    # time): the other user knows the path and plants there first
    argv_ = ["sh", "-c", 'kill -STOP $$; exec "$@"', "sh",
             *uvicorn_argv("workers_app:app", port, "--workers", "2", instrument=False)]
    predictable = None
    try:
        with run_process(argv_, app_dir, env) as proc:
            master = proc.proc.pid
            wait_until(lambda: process_state(master) == "T", what="the master stopped")
            predictable = f"/dev/shm/mystocks-otel-{master}-{start_time(master)}"
            if plant == "symlink":
                as_nobody(f"cat > {sticky}/0-1.db && ln -s {sticky} {predictable}", forged)
            else:
                as_nobody(f"mkdir -m 777 {predictable} && cat > {predictable}/0-1.db", forged)
            os.kill(master, signal.SIGCONT)
            proc.wait_port(port, timeout=30)
            wait_until(lambda: proc.output().count("mystocks-otel metrics:") >= 2 or None,
                       what="two start-up lines", proc=proc.proc)
            assert proc.output().count("multiprocess mode: workers of") == 2, proc.output()
            n, _ = send_until_spread(port, at_least=30)
            assert nine_scrapes(port, n) == [(n, n)] * 9
            if plant == "symlink":
                assert os.listdir(sticky) == ["0-1.db"]  # nothing of ours went there
    finally:
        if predictable and os.path.islink(predictable):
            os.unlink(predictable)
        elif predictable:
            shutil.rmtree(predictable, ignore_errors=True)
        shutil.rmtree(sticky, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="planting as another user needs root (runuser -u nobody)")
def test_a_planted_private_base_stops_the_server_with_one_line(app_dir):
    """gunicorn with two UvicornWorkers under opentelemetry-instrument: user nobody planted
    ``mystocks-otel.<uid>`` in the base (MYSTOCKS_OTEL_MULTIPROCESS_DIR) first. The workers
    must not serve values from a directory another user controls: each says why in one line
    and exits with gunicorn's boot-error code, so the arbiter stops instead of serving."""
    from mystocks_otel._internal.multiprocess.detection import private_base
    from test_multiprocess_hardening import as_nobody

    base = tempfile.mkdtemp(prefix="mystocks-test-base-", dir="/dev/shm")
    os.chmod(base, 0o1777)
    planted = private_base(base)
    as_nobody(f"mkdir -m 777 {planted}")
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   WORKERS_APP_ZERO_CODE="1", MYSTOCKS_OTEL_MULTIPROCESS_DIR=base)
    argv_ = [str(VENV_BIN / "opentelemetry-instrument"), GUNICORN, "workers_app:app", "-w", "2",
             "-k", "uvicorn.workers.UvicornWorker", "-b", f"127.0.0.1:{port}",
             "--graceful-timeout", "3"]
    try:
        with run_process(argv_, app_dir, env) as proc:
            code = proc.proc.wait(60)
            output = proc.output()
            refusals = [line for line in output.splitlines()
                        if line.startswith("mystocks-otel: refusing to start:")]
            assert code != 0, output
            assert refusals and all(planted in line for line in refusals), output
            # No traceback of ours. gunicorn's arbiter may print its own (HaltServer raised again
            # while it reaps the second worker that failed to boot): that is gunicorn's race.
            ours = [line for line in output.splitlines() if line.strip().startswith("File ")
                    and "mystocks_otel" in line]
            assert not ours, output
            assert os.listdir(planted) == []  # nothing of ours went there
    finally:
        shutil.rmtree(base, ignore_errors=True)
