"""The multiprocess store against a hostile local user, PID reuse and a long run (issue 13,
rows 1-3): real processes (fork), a real second user (``runuser -u nobody``), PID reuse forced
through ``/proc/sys/kernel/ns_last_pid``."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile

import pytest
from support import wait_until

from mystocks_otel import catalog
from mystocks_otel._internal.instruments import Instruments
from mystocks_otel._internal.multiprocess import Store, detection, fileformat, merge

FORK = multiprocessing.get_context("fork")
ORDERS = "mystocks.trading.orders"
LATENCY = "mystocks.db.query_duration"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: runuser and ns_last_pid")


def orders_of(store) -> float:
    items = dict(store.merged().get(ORDERS, ([], None))[0])
    return sum(items.values())


def _worker(directory, orders, trace, expected_pid=None, release=None, clean=False):
    """A worker: counts ``orders``, one latency with an exemplar, a live gauge; then exits
    (dead: killed, unless ``clean``, when it marks its shutdown first) or waits for ``release``."""
    if expected_pid is not None and os.getpid() != expected_pid:
        os._exit(3)  # not the PID we forced: touch nothing
    inst = Instruments(catalog.METRICS)
    store = Store(directory, inst, os.getppid(), "test")
    inst[ORDERS].add(orders, "buy", "market", "filled")
    latency = inst[LATENCY]
    latency.exemplar_source = lambda: (trace, 7)
    latency.record(0.002, "SELECT", "quotes")
    inst["http.server.active_requests"].add(1, "GET")
    if release is not None:
        release.recv()
    if clean:
        store.mark_clean_exit()
    del store
    os._exit(0)


def run_dead_worker(directory, orders, trace=1, clean=False):
    proc = FORK.Process(target=_worker, args=(str(directory), orders, trace, None, None, clean))
    proc.start()
    proc.join(20)
    assert proc.exitcode == 0
    return proc.pid


# -- row 1: a planted run directory ---------------------------------------------------------------

def as_nobody(script: str, stdin: bytes = b"") -> None:
    subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", script], input=stdin, check=True)


def forged_dead_worker_file() -> bytes:
    """A valid dead worker's file that says 5,000 orders."""
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o700)
        pid = run_dead_worker(scratch, 5000)
        (name,) = [n for n in os.listdir(scratch) if n.endswith(".db") and str(pid) in n]
        with open(os.path.join(scratch, name), "rb") as f:
            return f.read()


@pytest.fixture
def sticky():
    """A root-owned, world-writable, sticky directory (like /tmp) another user can write in."""
    path = tempfile.mkdtemp(prefix="mystocks-test-sticky-", dir="/dev/shm")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("plant", ["symlink", "directory"])
def test_a_run_directory_planted_by_another_user_never_reaches_metrics(monkeypatch, sticky, plant):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/test")  # this process is the master
    assert detection.detect() == (os.getpid(), "gunicorn (preloaded in the arbiter)")
    predictable = f"/dev/shm/mystocks-otel-{os.getpid()}-{detection.start_time(os.getpid())}"
    forged = forged_dead_worker_file()
    if plant == "symlink":  # to a root-owned sticky directory, holding a forged dead worker
        as_nobody(f"cat > {sticky}/0-1.db && ln -s {sticky} {predictable}", forged)
    else:
        as_nobody(f"mkdir -m 777 {predictable} && cat > {predictable}/0-1.db", forged)
    inst = Instruments(catalog.METRICS)
    try:
        store = Store.start(inst)  # no OSError (single-process mode): a private directory
        inst[ORDERS].add(2, "buy", "market", "filled")
        assert orders_of(store) == 2  # never the forged 5,000
        assert os.path.realpath(store.directory) == store.directory
        assert not store.directory.startswith(predictable)
        info = os.lstat(store.directory)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        assert stat.S_IMODE(info.st_mode) == 0o700
        if plant == "symlink":
            assert sorted(os.listdir(sticky)) == ["0-1.db"]  # nothing of ours went there
    finally:
        if os.path.islink(predictable):
            os.unlink(predictable)
        else:
            shutil.rmtree(predictable, ignore_errors=True)
        store_dir = locals().get("store") and store.directory
        if store_dir:
            shutil.rmtree(store_dir, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("plant", ["symlink", "directory", "file"])
def test_a_planted_base_refuses_to_start_with_one_line(monkeypatch, sticky, plant):
    """The private base is predictable too: planted by another user, the store refuses (one
    line naming the path) rather than write there or fall back to single-process mode."""
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/test")
    target = os.path.join(sticky, "target")
    base = os.path.join(sticky, "base")
    os.mkdir(base)
    os.chmod(base, 0o1777)
    planted = detection.private_base(base)
    script = {"symlink": f"mkdir -m 777 {target} && ln -s {target} {planted}",
              "directory": f"mkdir -m 700 {planted}",
              "file": f"touch {planted}"}[plant]
    as_nobody(script)
    with pytest.raises(detection.UnsafeDirectoryError) as raised:
        Store.start(Instruments(catalog.METRICS), base=base)
    message = str(raised.value)
    assert "\n" not in message and planted in message
    if plant == "symlink":
        assert os.listdir(target) == []


def test_a_base_of_ours_with_loose_mode_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/test")
    planted = detection.private_base(str(tmp_path))
    os.mkdir(planted, 0o755)
    os.chmod(planted, 0o755)
    with pytest.raises(detection.UnsafeDirectoryError, match="0755"):
        Store.start(Instruments(catalog.METRICS), base=str(tmp_path))


def test_the_private_base_and_run_directory_are_0700_and_files_0600(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/test")
    store = Store.start(Instruments(catalog.METRICS), base=str(tmp_path))
    for path in (detection.private_base(str(tmp_path)), store.directory):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700
    for name in os.listdir(store.directory):
        assert stat.S_IMODE(os.lstat(os.path.join(store.directory, name)).st_mode) == 0o600, name
    store.close()


# -- row 2: PID reuse ------------------------------------------------------------------------------

class PidTaken(Exception):
    """Another process holds the PID we want back: the scenario restarts on a fresh PID."""


def start_with_pid(target: int, directory, orders, trace, release=None) -> multiprocessing.Process:
    """A worker forked with PID ``target`` (forced through ns_last_pid; retried on a race).

    On a busy machine (the test session's background Go builds fork thousands of processes)
    the PID can be taken for good by someone else: that raises ``PidTaken``."""
    for _ in range(200):
        if os.path.exists(f"/proc/{target}"):
            raise PidTaken(target)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
        proc = FORK.Process(target=_worker, args=(directory, orders, trace, target, release))
        proc.start()
        if proc.pid == target:
            return proc
        proc.join(10)
    raise PidTaken(target)


def replacement_scenario(directory: str) -> None:
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    dead = run_dead_worker(directory, 5)
    assert orders_of(reader) == 5  # folded as a dead worker's totals
    again = start_with_pid(dead, directory, 3, 2)
    again.join(20)
    assert again.exitcode == 0 and again.pid == dead
    assert orders_of(reader) == 8  # the scraping worker that saw the first one
    assert orders_of(Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")) == 8
    # and a live replacement with the same PID again
    release_recv, release_send = FORK.Pipe(False)
    live = start_with_pid(dead, directory, 4, 3, release_recv)
    try:
        wait_until(lambda: orders_of(reader) == 12, what="12 orders")
        assert orders_of(Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")) == 12
    finally:
        release_send.send(True)
        live.join(20)
    assert orders_of(reader) == 12


@needs_root
def test_a_replacement_worker_with_a_dead_workers_pid_keeps_totals_exact(tmp_path):
    taken = []
    for attempt in range(5):
        directory = tmp_path / str(attempt)
        directory.mkdir(mode=0o700)
        try:
            replacement_scenario(str(directory))
            return
        except PidTaken as pid:
            taken.append(pid.args[0])
    pytest.fail(f"another process took the reused PID every time: {taken}")


# -- issue 15 row 6: a worker killed again and again under a living server ------------------------

def crashes_of(store) -> float:
    return dict(store.merged()["mystocks.system.worker_crashes"][0])[()]


def test_workers_that_die_without_marking_their_shutdown_are_counted_as_crashes(tmp_path):
    directory = str(tmp_path)
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    assert crashes_of(reader) == 0  # the series exists before any crash
    run_dead_worker(directory, 1, clean=True)  # recycled or stopped: it marked its shutdown
    assert crashes_of(reader) == 0
    run_dead_worker(directory, 1)  # killed (os._exit without the mark, as SIGKILL leaves it)
    run_dead_worker(directory, 1)
    assert crashes_of(reader) == 2 and orders_of(reader) == 3
    # folded into dead.totals, the crashes stay counted, for this reader and a new worker's
    assert [n for n in disk_files(directory) if n.endswith(".db")] == [os.path.basename(reader.file.path)]
    assert crashes_of(reader) == 2
    assert crashes_of(Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")) == 2
    run_dead_worker(directory, 1, clean=True)
    run_dead_worker(directory, 1)
    assert crashes_of(reader) == 3 and orders_of(reader) == 5


# -- row 3: dead workers compacted ----------------------------------------------------------------

def disk_files(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_dead_workers_are_compacted_and_a_new_worker_reads_one_file(tmp_path):
    directory = str(tmp_path)
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    for i in range(1, 21):
        run_dead_worker(directory, i, trace=0x100 + i)
        if i % 7 == 0:
            assert orders_of(reader) == i * (i + 1) / 2
    merged = reader.merged()
    assert sum(dict(merged[ORDERS][0]).values()) == 210
    (series,) = dict(merged[LATENCY][0]).values()
    bounds = list(catalog.get(LATENCY).buckets)
    assert series[bounds.index(0.0025)] == 20
    (kept,) = merged[LATENCY][1].values()
    assert kept[bounds.index(0.0025)][:2] == (0x114, 7)  # the latest exemplar
    assert "http.server.active_requests" not in merged or not dict(
        merged["http.server.active_requests"][0]).get(("GET",))  # dead workers' gauges vanish
    # every dead worker's file was folded into one file and removed
    worker_files = [n for n in disk_files(directory) if n.endswith(".db")]
    assert worker_files == [os.path.basename(reader.file.path)], disk_files(directory)
    # a new worker's first scrape reads the compacted totals and the live files only
    fresh = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    assert orders_of(fresh) == 210
    opened = [r for r in fresh.merge.readers.values() if r is not None]
    assert len(opened) <= 2


def _scraper(directory, go, done, results):
    store = Store(directory, Instruments(catalog.METRICS), os.getppid(), "test")
    seen = []
    go.wait()
    while not done.is_set():
        seen.append(orders_of(store))
    seen.append(orders_of(store))
    results.send(seen)
    os._exit(0)


def test_concurrent_scrapes_and_compactions_never_double_count_or_lose(tmp_path):
    directory = str(tmp_path)
    go, done = FORK.Event(), FORK.Event()
    scrapers = []
    for _ in range(3):
        recv, send = FORK.Pipe(False)
        proc = FORK.Process(target=_scraper, args=(directory, go, done, send))
        proc.start()
        scrapers.append((proc, recv))
    go.set()
    total = 0
    for i in range(1, 31):
        run_dead_worker(directory, i)
        total += i
    done.set()
    for proc, recv in scrapers:
        seen = recv.recv()
        proc.join(20)
        assert seen[-1] == total
        assert all(a <= b for a, b in zip(seen, seen[1:])), "a scrape went backwards"
        assert max(seen) == total, "a scrape double-counted"
    assert orders_of(Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")) == total


def test_a_compaction_that_dies_before_unlinking_never_counts_twice(tmp_path, monkeypatch):
    directory = str(tmp_path)
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    for orders in (1, 2):
        run_dead_worker(directory, orders)
    monkeypatch.setattr(merge, "_unlink", lambda name, dir_fd: None)  # dies after the rename
    assert orders_of(reader) == 3
    assert len([n for n in os.listdir(directory) if n.endswith(".db")]) == 3  # not unlinked
    for store in (reader, Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")):
        assert orders_of(store) == 3  # dead.totals names them: not read again
    monkeypatch.undo()
    run_dead_worker(directory, 4)
    assert orders_of(reader) == 7  # the next compaction unlinks them, and folds the new one
    assert orders_of(reader) == 7
    assert len([n for n in os.listdir(directory) if n.endswith(".db")]) == 2


def test_a_backlog_is_compacted_batch_by_batch_and_stays_exact(tmp_path):
    """Files of dead workers made in this process (a closed descriptor is a dead worker's
    released lock), more than one compaction batch."""
    directory = str(tmp_path)
    reader = Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")
    inst = Instruments(catalog.METRICS)
    inst[ORDERS].add(1, "buy", "market", "filled")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    count = 2 * merge.BATCH + 10
    for index in range(count):
        for recorder in inst:
            recorder.sink_offsets = {}
        worker = fileformat.ProcessFile(dir_fd, fileformat.file_name(index % 8 + 1))
        worker.write_all(inst)
        worker.close_inherited()
        del worker  # its mappings hold a duplicate of the locked descriptor
    gc.collect()
    os.close(dir_fd)
    for _ in range(3):
        assert orders_of(reader) == count
        assert len(reader.merge.folded) <= merge.BATCH
    assert [n for n in os.listdir(directory) if n.endswith(".db")] == [
        os.path.basename(reader.file.path)]
    assert orders_of(Store(directory, Instruments(catalog.METRICS), os.getpid(), "test")) == count
