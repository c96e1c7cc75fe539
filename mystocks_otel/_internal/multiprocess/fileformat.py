"""The file format: one memory-mapped file per worker (see the package docstring).

``<slot>-<pid>-<128-bit random id>.db``: an 8-byte header (bytes used), then entries
``[u32 key length][u32 value count][key: JSON [metric, label values]][padding][doubles]``.
:class:`ProcessFile` writes this process's file (it is the recorders' ``sink``);
:class:`FileReader` reads any worker's file; :func:`encode` writes the dead workers' totals
(``dead.totals``) in the same layout. Every file is opened relative to the run directory's
fd, never following a link, and made with ``O_EXCL``, mode 0600.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import secrets
import stat
import struct
import threading
import time

from ...catalog import Kind
from ..instruments import EXEMPLAR_METRICS, HistogramRecorder, Instruments, Recorder

INITIAL_SIZE = 1 << 20  # sparse: pages cost memory only once written
HEADER = struct.Struct("<Q")
ENTRY = struct.Struct("<II")
EXEMPLAR_WIDTH = 5  # trace id high, trace id low, span id, value, time
EXEMPLAR = struct.Struct("<QQQdd")
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC
#: The entry describing one of the app's own instruments (name, kind, unit, description,
#: buckets, scope: :meth:`..app_metrics.AppSpec.meta`), written once per file before its series.
META = "\0meta"
#: The entry saying how the worker ended: 0 while it runs (and forever, when it is killed),
#: 1 once it shut down cleanly (:meth:`ProcessFile.mark_clean_exit`). Written first in a file.
EXIT = "\0exit"


def file_name(slot: int) -> str:
    """A worker file's name: its identity is the random id, not the PID (PIDs are reused)."""
    return f"{slot}-{os.getpid()}-{secrets.token_hex(16)}.db"


def entry_width(recorder: Recorder) -> int:
    kind = recorder.spec.kind
    if kind is Kind.HISTOGRAM:
        exemplars = EXEMPLAR_WIDTH * recorder.width if recorder.spec.name in EXEMPLAR_METRICS else 0
        return recorder.width + 1 + exemplars
    return 1 if kind is Kind.COUNTER else 2




class ProcessFile:
    """This process's file: append entries, write values in place. The recorders' sink."""

    def __init__(self, dir_fd: int, name: str, directory: str = ""):
        self.path = os.path.join(directory, name)
        self.name = name
        # Made under another name, locked, then renamed: a reader never sees it unlocked.
        self._fd = os.open(name + ".new", os.O_RDWR | CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held until the process ends: "alive"
        self._size = INITIAL_SIZE
        os.ftruncate(self._fd, self._size)
        self._maps: list = []  # every mapping made; a writer may still hold an older view
        self._map()
        self._used = HEADER.size
        self._write_header()
        self._lock = threading.Lock()
        self._exit_at = self.append_entry(EXIT, (), 1)  # before the rename: readers always see it
        os.rename(name + ".new", name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def _map(self) -> None:
        mapped = mmap.mmap(self._fd, self._size)
        self._maps.append(mapped)
        self.bytes = mapped
        self.view = memoryview(mapped).cast("d")
        self.ints = memoryview(mapped).cast("Q")

    def _write_header(self) -> None:
        HEADER.pack_into(self.bytes, 0, self._used)

    def mark_clean_exit(self) -> None:
        """This worker is shutting down on purpose (recycled, stopped): not a crash."""
        self.view[self._exit_at] = 1.0

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
        return self.append_entry(recorder.spec.name, key, entry_width(recorder))

    def describe(self, spec) -> None:
        """An app instrument's descriptor (:mod:`..app_metrics`), so any worker can render it."""
        self.append_entry(META, spec.meta(), 0)

    def append_entry(self, metric: str, key, width: int) -> int:
        encoded = json.dumps([metric, list(key)], separators=(",", ":")).encode()
        padded = (len(encoded) + 7) & ~7
        size = ENTRY.size + padded + 8 * width
        with self._lock:
            while self._used + size > self._size:
                self._size *= 2
                os.ftruncate(self._fd, self._size)
                self._map()
            start = self._used
            ENTRY.pack_into(self.bytes, start, len(encoded), width)
            self.bytes[start + ENTRY.size:start + ENTRY.size + len(encoded)] = encoded
            self._used = start + size
            self._write_header()  # last: readers never see a half-written entry
        return (start + ENTRY.size + padded) // 8

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
            self.write_recorder(recorder)

    def write_recorder(self, recorder: Recorder) -> None:
        for key, value in recorder.snapshot():  # copies, taken under the recorder's lock
            if isinstance(recorder, HistogramRecorder):
                at = self.offset(recorder, key)
                for i in range(recorder.width):
                    self.view[at + i] = value[i]
                self.view[at + recorder.width] = value[-3]
            else:
                self.set(recorder, key, value)


# -- reading any worker's file -------------------------------------------------------------------

class FileReader:
    """One worker's file, read by any worker: entries parsed once, values read at each scrape."""

    def __init__(self, dir_fd: int, name: str, directory: str = ""):
        self.path = os.path.join(directory, name)
        self.name = name
        self.slot = name.split("-", 1)[0]
        self._fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
        info = os.fstat(self._fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            os.close(self._fd)
            raise OSError(f"{self.path}: not a regular file of ours")
        self.identity = (info.st_dev, info.st_ino)  # held open: the inode is not reused
        self._map = None
        self._size = 0
        self._parsed = HEADER.size
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

    def exited_cleanly(self) -> bool:
        """Whether the worker marked its shutdown (a killed one never does)."""
        return any(self.view[at] for _, at, _ in self.entries.get(EXIT, ()))

    def detach(self) -> None:
        """A dead worker's file never changes again: keep a copy of what it holds and let go
        of the descriptor and the mapping (a backlog of dead files holds no descriptors)."""
        if self._fd is None:
            return
        if self._map is not None:
            data = bytes(self._map[:self._parsed])
            self.view = memoryview(data).cast("d")
            self.ints = memoryview(data).cast("Q")
            self._map.close()
            self._map = data
        self.close()

    def refresh(self):
        if self._fd is None:
            return  # detached
        size = os.fstat(self._fd).st_size
        if size < HEADER.size:
            return
        if size != self._size:
            self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
            self.view = memoryview(self._map).cast("d")
            self.ints = memoryview(self._map).cast("Q")
            self._size = size
        used = min(HEADER.unpack_from(self._map, 0)[0], self._size)
        position = self._parsed
        while position + ENTRY.size <= used:
            length, width = ENTRY.unpack_from(self._map, position)
            padded = (length + 7) & ~7
            raw = self._map[position + ENTRY.size:position + ENTRY.size + length]
            metric, values = json.loads(raw)
            self.entries.setdefault(metric, []).append(
                (tuple(values), (position + ENTRY.size + padded) // 8, width))
            position += ENTRY.size + padded + 8 * width
        self._parsed = position

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def exemplar_at(reader: FileReader, at: int):
    when = reader.view[at + 4]
    if not when:
        return None
    trace_id = (reader.ints[at] << 64) | reader.ints[at + 1]
    return (trace_id, reader.ints[at + 2], reader.view[at + 3], when)


def encode(entries) -> bytes:
    """A file in the workers' layout from ``[(metric, key, doubles, exemplars)]``, where
    ``exemplars`` is None or a list of ``(trace id, span id, value, time)`` or None per
    bucket. Metric names not in the catalog (the list of folded files) are entries too."""
    parts = [b""]
    used = HEADER.size
    for metric, key, doubles, exemplars in entries:
        encoded = json.dumps([metric, list(key)], separators=(",", ":")).encode()
        padded = (len(encoded) + 7) & ~7
        width = len(doubles) + (EXEMPLAR_WIDTH * len(exemplars) if exemplars is not None else 0)
        parts.append(ENTRY.pack(len(encoded), width) + encoded + b"\0" * (padded - len(encoded)))
        parts.append(struct.pack(f"<{len(doubles)}d", *doubles))
        for kept in exemplars or ():
            if kept is None:
                parts.append(b"\0" * (8 * EXEMPLAR_WIDTH))
            else:
                trace_id, span_id, value, when = kept
                parts.append(EXEMPLAR.pack(trace_id >> 64, trace_id & 0xFFFFFFFFFFFFFFFF,
                                           span_id, value, when))
        used += ENTRY.size + padded + 8 * width
    parts[0] = HEADER.pack(used)
    return b"".join(parts)
