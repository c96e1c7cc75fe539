"""Several workers, one ``/metrics``: every worker's values in a shared directory, merged on scrape.

Under ``uvicorn --workers N`` or gunicorn, each worker is a process with its own
recorders, and a scrape reaches one worker at random. In multiprocess mode every worker
mirrors each value it changes into its own memory-mapped file, and a scrape on any
worker merges all the files of the run (:meth:`Store.merged`).

**It just works.** :func:`detect` finds the server's master process, with no setting:

- uvicorn (``--workers N``, or ``uvicorn.run(workers=N)``): a worker is a ``spawn`` child
  of uvicorn's supervisor (``multiprocessing.parent_process()``, ``uvicorn._subprocess``);
- gunicorn: the arbiter exports ``SERVER_SOFTWARE=gunicorn/...``; a worker (gunicorn's
  ``workers/`` code is loading the app) has the arbiter for parent. With ``--preload`` the
  app is set up in the arbiter itself (``Arbiter.setup`` on the stack), which then uses its
  own pid, and each forked worker moves to a file of its own (``os.register_at_fork``).

**One directory per run**, ``<base>/mystocks-otel-<master pid>-<master start time>``, with
``<base>`` ``/dev/shm`` (RAM) when writable, else the temporary directory. A new run has a
new master, hence a new directory: files of a previous run never leak into its totals.
Directories whose master is gone are removed when a run starts.

**Files.** ``<slot>-<pid>.db``: an 8-byte header (bytes used), then entries
``[u32 key length][u32 value count][key: JSON [metric, label values]][padding][doubles]``.
Entries are only appended; values are written in place through a ``memoryview`` of the
``mmap`` (about 0.1 us): a worker killed by SIGKILL has already written every value it
counted (the kernel keeps the pages of a shared mapping). Counters hold their total;
gauges and up-down counters ``[value, time]``; histograms their bucket counts, the sum and,
for exemplar histograms, five numbers per bucket (trace id high/low, span id, value, time).

**Liveness.** Each worker holds an exclusive ``flock`` on its file for its lifetime; the
kernel drops it when the process dies, however it dies. A reader that can take a shared
lock on a file knows its writer is dead.

**Merging** (:attr:`MetricSpec.multiprocess`): counters and histograms add up the files of
every worker of the run, dead ones included, so totals never go backwards when a worker is
replaced (``max`` for totals copied from elsewhere). Gauges and up-down counters read only
live workers: ``sum``, ``max``, ``min``, ``latest`` (by write time), or ``worker``: one series
per live worker, labelled with its *slot* (0, 1, 2...: the lowest free ``slot-<n>.lock`` it
could lock), which a replacement worker reuses, so the label stays bounded. Pool gauges are
per worker: a pool belongs to one process, and a sum would hide one worker's exhausted pool.
Exemplars: the latest of each bucket over all files.

**Why not prometheus_client's multiprocess mode** (the precedent, read before writing
this): the idea is the same (an mmap file per process, merged on scrape), and so is the
record-time write that survives SIGKILL. Its parts did not fit:

- its files hold one value per JSON key (a histogram is one key per bucket, plus the sum)
  and its ``MultiProcessCollector`` reads every file and ``json.loads`` every distinct key
  at each scrape; here a series is one entry, parsed once per reading process;
- a dead worker's live gauges go only through an explicit ``mark_process_dead(pid)`` from a
  server hook (gunicorn's ``child_exit``, configured by the user): uvicorn ``--workers`` has
  no such hook; here the kernel's ``flock`` release says it, with nothing to configure;
- its per-process gauges are labelled with the ``pid``, a label that grows with every
  replaced worker; here the ``worker`` label is a reused slot;
- it has no exemplars (nor custom collectors, Info or Enum); here exemplars are kept per
  bucket in the files too;
- it renders through prometheus_client's own families, not our exposition.

**Limits.** Files of dead workers stay on disk until the run ends (each is read once, when
found dead, and folded into one in-memory total: scrape cost does not grow with replaced
workers). Values are written without a lock between processes, so a scrape may see a
histogram bucket a moment before its sum. Detection reads ``/proc`` (Linux); elsewhere, and
under other servers (hypercorn, granian), each worker answers for itself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import multiprocessing
import os
import shutil
import struct
import sys
import tempfile
import threading
import time

from .catalog import LATEST, MAX, MIN, PER_WORKER, SUM, Kind
from .instruments import EXEMPLAR_METRICS, HistogramRecorder, Instruments, Recorder

_log = logging.getLogger(__name__)
PREFIX = "mystocks-otel-"
INITIAL_SIZE = 1 << 20  # sparse: pages cost memory only once written
_HEADER = struct.Struct("<Q")
_ENTRY = struct.Struct("<II")
EXEMPLAR_WIDTH = 5  # trace id high, trace id low, span id, value, time


# -- which mode ---------------------------------------------------------------------------------

def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("0" where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "0"


def detect() -> tuple[int, str] | None:
    """``(master pid, server name)`` when this process is one of a server's workers, else None."""
    parent = multiprocessing.parent_process()
    if parent is not None and "uvicorn._subprocess" in sys.modules:
        return parent.pid, "uvicorn"
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        role = _gunicorn_role()
        if role == "worker" or (role is None and b"gunicorn" in _cmdline(os.getppid())):
            return os.getppid(), "gunicorn"
        return os.getpid(), "gunicorn (preloaded in the arbiter)"
    return None


def _gunicorn_role() -> str | None:
    """"worker" or "arbiter": who is loading the app now, from gunicorn's frames on the stack
    (a worker loads it in ``gunicorn/workers/``; ``--preload`` in ``Arbiter.setup``)."""
    frame, role = sys._getframe(), None
    while frame is not None:
        filename = frame.f_code.co_filename.replace(os.sep, "/")
        if "/gunicorn/workers/" in filename:
            return "worker"
        if filename.endswith("/gunicorn/arbiter.py"):
            role = "arbiter"
        frame = frame.f_back
    return role


def base_directory() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def run_directory(base: str, master: int) -> str:
    return os.path.join(base, f"{PREFIX}{master}-{_start_time(master)}")


def remove_stale_runs(base: str) -> None:
    """Remove run directories whose master process is gone (or is another process now)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid, _, started = name[len(PREFIX):].partition("-")
        if not pid.isdigit() or _start_time(int(pid)) == started:
            continue
        if started == "0" and os.path.exists(f"/proc/{pid}"):
            continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)


# -- this process's file ---------------------------------------------------------------------------

def _width(recorder: Recorder) -> int:
    kind = recorder.spec.kind
    if kind is Kind.HISTOGRAM:
        exemplars = EXEMPLAR_WIDTH * recorder.width if recorder.spec.name in EXEMPLAR_METRICS else 0
        return recorder.width + 1 + exemplars
    return 1 if kind is Kind.COUNTER else 2




class ProcessFile:
    """This process's file: append entries, write values in place. The recorders' sink."""

    def __init__(self, path: str):
        self.path = path
        # Made under another name, locked, then renamed: a reader never sees it unlocked.
        self._fd = os.open(path + ".new", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held until the process ends: "alive"
        self._size = INITIAL_SIZE
        os.ftruncate(self._fd, self._size)
        self._maps: list = []  # every mapping made; a writer may still hold an older view
        self._map()
        self._used = _HEADER.size
        self._write_header()
        os.rename(path + ".new", path)
        self._lock = threading.Lock()

    def _map(self) -> None:
        mapped = mmap.mmap(self._fd, self._size)
        self._maps.append(mapped)
        self.bytes = mapped
        self.view = memoryview(mapped).cast("d")
        self.ints = memoryview(mapped).cast("Q")

    def _write_header(self) -> None:
        _HEADER.pack_into(self.bytes, 0, self._used)

    def close_inherited(self) -> None:
        """In a forked child: let go of the parent's file without unlocking it for the parent."""
        os.close(self._fd)

    # -- entries ----------------------------------------------------------------------------
    def attach(self, recorder: Recorder) -> None:
        recorder.sink_offsets = {}  # key -> offset in this file
        recorder.sink = self

    def offset(self, recorder: Recorder, key: tuple) -> int:
        """Index (in doubles) of the first value of ``key``'s entry; made on first use."""
        found = recorder.sink_offsets.get(key)
        if found is None:
            found = recorder.sink_offsets[key] = self._append(recorder, key)
        return found

    def _append(self, recorder: Recorder, key: tuple) -> int:
        encoded = json.dumps([recorder.spec.name, list(key)], separators=(",", ":")).encode()
        width = _width(recorder)
        padded = (len(encoded) + 7) & ~7
        size = _ENTRY.size + padded + 8 * width
        with self._lock:
            while self._used + size > self._size:
                self._size *= 2
                os.ftruncate(self._fd, self._size)
                self._map()
            start = self._used
            _ENTRY.pack_into(self.bytes, start, len(encoded), width)
            self.bytes[start + _ENTRY.size:start + _ENTRY.size + len(encoded)] = encoded
            self._used = start + size
            self._write_header()  # last: readers never see a half-written entry
        return (start + _ENTRY.size + padded) // 8

    # -- the recorders' sink API (called under the recorder's lock) -------------------------
    def set(self, recorder: Recorder, key: tuple, value: float) -> None:
        at = recorder.sink_offsets.get(key)
        if at is None:
            at = self.offset(recorder, key)
        view = self.view
        view[at] = value
        if recorder.spec.kind is not Kind.COUNTER:
            view[at + 1] = time.time()

    def observe(self, recorder: HistogramRecorder, key: tuple, series: list, index: int) -> None:
        at = recorder.sink_offsets.get(key)
        if at is None:
            at = self.offset(recorder, key)
        view = self.view
        view[at + index] = series[index]
        view[at + recorder.width] = series[-3]

    def exemplar(self, recorder: HistogramRecorder, key: tuple, index: int, kept: tuple) -> None:
        if recorder.spec.name not in EXEMPLAR_METRICS:
            return
        at = self.offset(recorder, key) + recorder.width + 1 + EXEMPLAR_WIDTH * index
        trace_id, span_id, value, when = kept
        self.ints[at] = trace_id >> 64
        self.ints[at + 1] = trace_id & 0xFFFFFFFFFFFFFFFF
        self.ints[at + 2] = span_id
        self.view[at + 3] = value
        self.view[at + 4] = when

    def write_all(self, instruments: Instruments) -> None:
        """Mirror what the recorders hold now (values recorded before set-up, or kept by a fork)."""
        for recorder in instruments:
            with recorder._lock:
                for key, value in recorder._data.items():
                    if isinstance(recorder, HistogramRecorder):
                        at = self.offset(recorder, key)
                        for i in range(recorder.width):
                            self.view[at + i] = value[i]
                        self.view[at + recorder.width] = value[-3]
                    else:
                        self.set(recorder, key, value)


# -- reading every file of the run -----------------------------------------------------------------

class _Reader:
    """One worker's file, read by any worker: entries parsed once, values read at each scrape."""

    def __init__(self, path: str):
        self.path = path
        name = os.path.basename(path)
        self.slot = name.split("-", 1)[0]
        self._fd = os.open(path, os.O_RDONLY)
        self._map = None
        self._size = 0
        self._parsed = _HEADER.size
        self.entries: dict[str, list[tuple[tuple, int, int]]] = {}  # metric -> (key, offset, width)
        self.dead = False

    def alive(self) -> bool:
        if self.dead:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.dead = True
        return False

    def refresh(self):
        size = os.fstat(self._fd).st_size
        if size < _HEADER.size:
            return
        if size != self._size:
            self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
            self.view = memoryview(self._map).cast("d")
            self.ints = memoryview(self._map).cast("Q")
            self._size = size
        used = min(_HEADER.unpack_from(self._map, 0)[0], self._size)
        position = self._parsed
        while position + _ENTRY.size <= used:
            length, width = _ENTRY.unpack_from(self._map, position)
            padded = (length + 7) & ~7
            raw = self._map[position + _ENTRY.size:position + _ENTRY.size + length]
            metric, values = json.loads(raw)
            self.entries.setdefault(metric, []).append(
                (tuple(values), (position + _ENTRY.size + padded) // 8, width))
            position += _ENTRY.size + padded + 8 * width
        self._parsed = position

    def close(self) -> None:
        os.close(self._fd)


def _exemplar_at(reader: _Reader, at: int):
    when = reader.view[at + 4]
    if not when:
        return None
    trace_id = (reader.ints[at] << 64) | reader.ints[at + 1]
    return (trace_id, reader.ints[at + 2], reader.view[at + 3], when)


class Store:
    """The run's directory: this process's file, and the merge of every file."""

    def __init__(self, directory: str, instruments: Instruments, master: int, server: str):
        self.directory = directory
        self.instruments = instruments
        self.master = master
        self.server = server
        self._specs = {recorder.spec.name: recorder for recorder in instruments}
        self._readers: dict[str, _Reader | None] = {}  # None: a dead worker's file, folded
        self._dead: dict[str, dict] = {}  # dead workers' counters and histograms, merged
        self._dead_exemplars: dict[str, dict] = {}
        self._merge_lock = threading.Lock()
        self._slot_fd = None
        self.file: ProcessFile | None = None
        self._open_own_file()

    @classmethod
    def start(cls, instruments: Instruments) -> "Store | None":
        found = detect()
        if found is None:
            return None
        master, server = found
        base = base_directory()
        remove_stale_runs(base)
        directory = run_directory(base, master)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.stat(directory).st_uid != os.getuid():  # made by another user: not ours to trust
            raise PermissionError(f"{directory} belongs to another user")
        store = cls(directory, instruments, master, server)
        os.register_at_fork(after_in_child=store._after_fork_in_child)
        return store

    def describe(self) -> str:
        return (f"multiprocess mode: workers of {self.server} master {self.master} share /metrics "
                f"through {self.directory} (this process: slot {self.slot}, pid {os.getpid()})")

    # -- this process ---------------------------------------------------------------------
    def _claim_slot(self) -> int:
        slot = 0
        while True:
            fd = os.open(os.path.join(self.directory, f"slot-{slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                slot += 1
                continue
            self._slot_fd = fd
            return slot

    def _open_own_file(self) -> None:
        self.slot = self._claim_slot()
        self.file = ProcessFile(os.path.join(self.directory, f"{self.slot}-{os.getpid()}.db"))
        for recorder in self.instruments:
            recorder.sink_offsets = {}
        self.file.write_all(self.instruments)
        for recorder in self.instruments:
            self.file.attach(recorder)

    def _after_fork_in_child(self) -> None:
        """A forked worker (gunicorn --preload): counts made before the fork stay in the
        parent's file; the child starts its own file, slot and totals."""
        for recorder in self.instruments:
            recorder.sink = None
            recorder._lock = threading.Lock()  # a parent thread may have held it at fork time
            if recorder.spec.kind is not Kind.GAUGE:
                recorder.clear_values()
        if self.file is not None:
            self.file.close_inherited()
        if self._slot_fd is not None:
            os.close(self._slot_fd)
        for reader in self._readers.values():
            if reader is not None:
                reader.close()
        self._readers = {}
        self._dead, self._dead_exemplars = {}, {}
        self._merge_lock = threading.Lock()
        self.master = os.getppid()
        self._open_own_file()
        logging.getLogger("gunicorn.error").info("mystocks-otel metrics: %s", self.describe())

    # -- the merge ----------------------------------------------------------------------------
    def _live_readers(self) -> list[_Reader]:
        """Readers of the live workers' files. A file found dead is read one last time,
        folded into the dead workers' totals and closed: its values never change again,
        so a scrape costs the same however many workers have been replaced."""
        for name in os.listdir(self.directory):
            if name.endswith(".db") and name not in self._readers:
                try:
                    self._readers[name] = _Reader(os.path.join(self.directory, name))
                except OSError:
                    continue
        live = []
        for name, reader in self._readers.items():
            if reader is None:
                continue
            if reader.alive():
                reader.refresh()
                live.append(reader)
                continue
            reader.refresh()  # everything it wrote before it died
            self._merge_file(self._dead, self._dead_exemplars, reader, alive=False)
            reader.close()
            self._readers[name] = None  # folded: never opened again
        return live

    def _merge_file(self, acc: dict, exemplars: dict, reader: _Reader, alive: bool) -> None:
        for metric, entries in reader.entries.items():
            recorder = self._specs.get(metric)
            if recorder is None:
                continue
            series = acc.setdefault(metric, {})
            kind = recorder.spec.kind
            if kind is Kind.HISTOGRAM:
                _merge_histograms(series, exemplars.setdefault(metric, {}), recorder.width,
                                  reader, entries)
            elif kind is Kind.COUNTER:
                _merge_counters(series, recorder.spec.multiprocess, reader.view, entries)
            elif alive:  # gauges and up-down counters: live workers only
                _merge_gauges(series, recorder.spec.multiprocess, reader, entries)

    def merged(self) -> dict[str, tuple[list, dict | None]]:
        """``{metric: (items, exemplars)}`` over every file, in the shapes the recorders give."""
        with self._merge_lock:
            live = self._live_readers()
            acc = {metric: {key: value[:] if isinstance(value, list) else value
                            for key, value in series.items()}
                   for metric, series in self._dead.items()}
            exemplars = {metric: {key: kept[:] for key, kept in found.items()}
                         for metric, found in self._dead_exemplars.items()}
            for reader in live:
                self._merge_file(acc, exemplars, reader, alive=True)
        merged = {}
        for metric, series in acc.items():
            recorder = self._specs[metric]
            if recorder.spec.kind in (Kind.GAUGE, Kind.UPDOWN):
                items = [(key, value[0]) for key, value in series.items()]
            else:
                items = list(series.items())
            merged[metric] = (items, exemplars.get(metric))
        return merged


def _merge_histograms(series: dict, exemplars: dict, n: int, reader: _Reader, entries) -> None:
    view = reader.view
    for key, at, width in entries:
        values = view[at:at + n + 1].tolist()  # bucket counts, then the sum
        total = series.get(key)
        if total is None:
            series[key] = values
        else:
            for i in range(n + 1):
                total[i] += values[i]
        if width > n + 1:
            _merge_exemplars(exemplars, reader, key, at + n + 1, n)


def _merge_counters(series: dict, rule: str | None, view, entries) -> None:
    get = series.get
    if rule == MAX:  # totals copied from elsewhere: every worker saw the same counter
        for key, at, _ in entries:
            value = view[at]
            previous = get(key)
            series[key] = value if previous is None or value > previous else previous
    else:
        for key, at, _ in entries:
            series[key] = get(key, 0.0) + view[at]


def _merge_gauges(series: dict, rule: str | None, reader: _Reader, entries) -> None:
    """Values are ``(value, write time)`` until the end of the merge."""
    view = reader.view
    for key, at, _ in entries:
        value, when = view[at], view[at + 1]
        if rule == PER_WORKER:
            series[key + (reader.slot,)] = (value, when)
            continue
        previous = series.get(key)
        if previous is None:
            series[key] = (value, when)
        elif rule == MAX:
            series[key] = max(previous, (value, when))
        elif rule == MIN:
            series[key] = min(previous, (value, when))
        elif rule == LATEST:
            series[key] = previous if previous[1] >= when else (value, when)
        else:  # SUM (and a rule left unset)
            series[key] = (previous[0] + value, max(previous[1], when))


def _merge_exemplars(kept: dict, reader: _Reader, key: tuple, at: int, width: int) -> None:
    current = kept.get(key)
    for i in range(width):
        found = _exemplar_at(reader, at + EXEMPLAR_WIDTH * i)
        if found is None:
            continue
        if current is None:
            current = kept[key] = [None] * width
        if current[i] is None or current[i][3] < found[3]:
            current[i] = found

