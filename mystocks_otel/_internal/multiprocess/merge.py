"""The merge: every worker's file of the run, summed into one view at a scrape; dead workers'
files compacted into one.

Counters and histograms add up the files of every worker, dead ones included (``max`` for
totals copied from elsewhere); gauges and up-down counters read only live workers, by their
:attr:`MetricSpec.multiprocess` rule.

**Compaction.** After a scrape that met a dead worker's file, the scraping worker folds every
dead worker's file into ``dead.totals`` (counters and histograms, bucket by bucket, the latest
exemplar of each bucket; dead workers' gauges are dropped), under an exclusive ``flock`` of
``compact.lock``: it writes ``dead.totals.tmp``, renames it over ``dead.totals`` (atomic),
then unlinks the folded files. ``dead.totals`` names the files folded into it last, so a
compaction that died between the rename and the unlinks is never counted twice (the next one
unlinks them). One compaction folds at most :data:`BATCH` files (a backlog goes over
several scrapes), so the list, and the time scrapes wait for the lock, stay bounded. A
scrape holds a shared ``flock`` of ``compact.lock`` while it reads, so it sees the totals
and the worker files of one state: before a compaction or after it, never both. A
compaction never waits: when the lock is busy, the next scrape does it. Disk use and a new
worker's first scrape are then bounded by the series, not by how many workers died.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from types import SimpleNamespace

from ...catalog import LATEST, MAX, MIN, PER_WORKER, Kind
from ..instruments import EXEMPLAR_METRICS, Instruments
from .. import client_registry
from ..app_metrics import AppSpec
from .fileformat import CREATE_FLAGS, EXEMPLAR_WIDTH, META, FileReader, encode, exemplar_at

_log = logging.getLogger(__name__)

LOCK = "compact.lock"
TOTALS = "dead.totals"
TOTALS_TMP = "dead.totals.tmp"
ABANDONED_AFTER = 60.0  # seconds
#: Most dead files one compaction folds: it holds the lock (scrapes wait) about 0.1 ms per
#: file, and dead.totals names the files it folded last. A backlog goes batch by batch.
BATCH = 256
FOLDED = "\0folded"  # the entry of dead.totals naming the files folded in last
#: Workers that died without marking a clean exit (:data:`.fileformat.EXIT`): counted as each
#: dead file is met, kept in dead.totals like any counter.
CRASHES = "mystocks.system.worker_crashes"


class RunMerge:
    """Reads every file in the run directory and merges them into the recorders' shapes."""

    def __init__(self, directory: str, instruments: Instruments, dir_fd: int,
                 compact: bool = True):
        self.directory = directory
        self.dir_fd = dir_fd
        self.compact = compact
        self.specs = {recorder.spec.name: recorder for recorder in instruments}
        #: the app's own instruments (name -> a recorder-like with .spec and .width), learnt
        #: from the descriptor entries of every file read: any worker's, dead ones' too
        self.app_specs: dict[str, SimpleNamespace] = {}
        self.readers: dict[str, FileReader] = {}  # worker files not compacted yet
        self.dead: dict[str, dict] = {}  # dead.totals, as loaded
        self.dead_exemplars: dict[str, dict] = {}
        self.folded: frozenset = frozenset()  # files dead.totals holds, maybe not unlinked yet
        self._totals: FileReader | None = None  # held open: its inode identifies the version
        self.lock = threading.Lock()
        self._lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                0o600, dir_fd=dir_fd)
        self._failure_logged = False

    def close(self) -> None:
        """Let go of every file (a forked child starts its own merge; the parent's locks and
        files stay the parent's: closing a descriptor never unlocks another one's flock)."""
        for reader in self.readers.values():
            reader.close()
        self.readers = {}
        if self._totals is not None:
            self._totals.close()
            self._totals = None
        os.close(self._lock_fd)

    # -- reading --------------------------------------------------------------------------
    def _load_totals(self) -> None:
        """(Re)load dead.totals when a compaction replaced it."""
        try:
            info = os.stat(TOTALS, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if self._totals is not None and self._totals.identity == (info.st_dev, info.st_ino):
            return
        reader = FileReader(self.dir_fd, TOTALS, self.directory)
        reader.refresh()
        dead, exemplars = {}, {}
        self.merge_file(dead, exemplars, reader, alive=False)
        if self._totals is not None:
            self._totals.close()
        self._totals, self.dead, self.dead_exemplars = reader, dead, exemplars
        self.folded = frozenset(_folded_names(reader))

    def _scan(self) -> tuple[list[FileReader], list[FileReader]]:
        """(live, dead) readers of the worker files not in dead.totals."""
        names = set(os.listdir(self.dir_fd))
        for name in [n for n in self.readers if n not in names or n in self.folded]:
            self.readers.pop(name).close()  # compacted
        for name in names:
            if name.endswith(".db") and name not in self.readers and name not in self.folded:
                try:
                    self.readers[name] = FileReader(self.dir_fd, name, self.directory)
                except OSError:
                    continue
        live, dead = [], []
        for reader in self.readers.values():
            if reader.alive():
                reader.refresh()
                live.append(reader)
            else:  # until compacted: everything it wrote before it died, copied
                reader.refresh()
                reader.detach()
                dead.append(reader)
        return live, dead

    def live_readers(self) -> list[FileReader]:
        return self._scan()[0]

    def learn(self, reader: FileReader) -> None:
        """The app instruments a file describes (:data:`.fileformat.META` entries)."""
        for meta, _, _ in reader.entries.get(META, ()):
            name = meta[0] if meta else None
            if name in self.app_specs or name in self.specs:
                continue
            spec = AppSpec.from_meta(meta)
            if spec is not None:
                self.app_specs[name] = SimpleNamespace(spec=spec, width=len(spec.buckets or ()) + 1)

    def recorder(self, metric: str):
        return self.specs.get(metric) or self.app_specs.get(metric)

    def merge_file(self, acc: dict, exemplars: dict, reader: FileReader, alive: bool) -> None:
        self.learn(reader)
        for metric, entries in reader.entries.items():
            recorder = self.recorder(metric)
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
        with self.lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # no compaction while we read
            try:
                self._load_totals()
                live, dead = self._scan()
                acc = {metric: {key: value[:] if isinstance(value, list) else value
                                for key, value in series.items()}
                       for metric, series in self.dead.items()}
                exemplars = {metric: {key: kept[:] for key, kept in found.items()}
                             for metric, found in self.dead_exemplars.items()}
                for reader in dead:
                    self.merge_file(acc, exemplars, reader, alive=False)
                # the series exists from the first scrape, at 0: increase() sees the first crash
                _add_crashes(acc, sum(not reader.exited_cleanly() for reader in dead))
                for reader in live:
                    self.merge_file(acc, exemplars, reader, alive=True)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            if dead and self.compact:
                self.compact_dead()
        merged = {}
        for metric, series in acc.items():
            if not series:
                continue
            recorder = self.recorder(metric)
            if recorder.spec.kind in (Kind.GAUGE, Kind.UPDOWN):
                items = [(key, value[0]) for key, value in series.items()]
            else:
                items = list(series.items())
            merged[metric] = (items, exemplars.get(metric))
        return merged

    # -- compaction -----------------------------------------------------------------------
    def compact_dead(self, wait: bool = False, everything: bool = False) -> int:
        """Fold up to :data:`BATCH` dead workers' files (``everything``: batch after batch,
        until none is left) into dead.totals; returns how many were folded (0 when none, or
        when another process holds the lock and ``wait`` is false)."""
        total = 0
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return total  # another worker compacts or scrapes: the next scrape does it
            try:
                folded = self._compact(BATCH)
            except OSError as exc:  # e.g. a full /dev/shm: totals stay exact, uncompacted
                if not self._failure_logged:
                    self._failure_logged = True
                    _log.warning("mystocks-otel: could not compact dead workers' files in %s: %s",
                                 self.directory, exc)
                return total
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)  # scrapes may run between batches
            total += folded
            if not everything or folded < BATCH:
                return total

    def _compact(self, limit: int) -> int:
        dir_fd = self.dir_fd
        acc: dict = {}
        exemplars: dict = {}
        previous: set = set()
        try:
            current = FileReader(dir_fd, TOTALS, self.directory)
        except FileNotFoundError:
            pass
        else:
            current.refresh()
            self.merge_file(acc, exemplars, current, alive=False)
            previous = set(_folded_names(current))
            current.close()
        names = os.listdir(dir_fd)
        folded = []
        crashes = 0  # of the folded files, those whose worker never marked a clean exit
        for name in names:
            if name in previous:  # in dead.totals already: a compaction died before unlinking
                _unlink(name, dir_fd)
            elif name.endswith(".db") and len(folded) < limit:
                try:
                    reader = FileReader(dir_fd, name, self.directory)
                except OSError:
                    continue
                try:
                    if reader.alive():
                        continue
                    reader.refresh()
                    self.merge_file(acc, exemplars, reader, alive=False)
                    folded.append(name)
                    crashes += not reader.exited_cleanly()
                finally:
                    reader.close()
            elif name.endswith(".db.new"):
                _unlink_if_abandoned(name, dir_fd)  # a worker that died starting
        if not folded:
            return 0
        _add_crashes(acc, crashes)
        data = encode(self._entries(acc, exemplars, folded))
        _unlink(TOTALS_TMP, dir_fd)
        fd = os.open(TOTALS_TMP, os.O_WRONLY | CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(TOTALS_TMP, TOTALS, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        for name in folded:
            _unlink(name, dir_fd)
        # the app's prometheus_client files (PROMETHEUS_MULTIPROC_DIR): its live gauges go too
        client_registry.forget_dead_workers(
            int(parts[1]) for parts in (name.split("-") for name in folded)
            if len(parts) > 2 and parts[1].isdigit())
        return len(folded)

    def _entries(self, acc: dict, exemplars: dict, folded: list):
        yield FOLDED, tuple(folded), [], None
        for metric in acc:
            if metric in self.app_specs:  # described first: the reader learns it before its series
                yield META, self.app_specs[metric].spec.meta(), [], None
        for metric, series in acc.items():
            recorder = self.recorder(metric)
            kind = recorder.spec.kind
            if kind is Kind.COUNTER:
                for key, value in series.items():
                    yield metric, key, [value], None
            elif kind is Kind.HISTOGRAM:
                kept = exemplars.get(metric, {})
                with_exemplars = metric in EXEMPLAR_METRICS
                for key, values in series.items():
                    found = kept.get(key) or [None] * recorder.width
                    yield metric, key, values, (found if with_exemplars else None)


def _add_crashes(acc: dict, crashes: int) -> None:
    series = acc.setdefault(CRASHES, {})
    series[()] = series.get((), 0.0) + crashes


def _folded_names(reader: FileReader) -> list[str]:
    return [name for key, _, _ in reader.entries.get(FOLDED, ()) for name in key]


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _unlink_if_abandoned(name: str, dir_fd: int) -> None:
    """A new worker's file before its rename: unlocked for an instant after its creation, so
    only one left for a minute (its worker died starting; it holds no counts yet) goes."""
    try:
        reader = FileReader(dir_fd, name)
    except OSError:
        return
    try:
        if time.time() - os.fstat(reader._fd).st_mtime > ABANDONED_AFTER and not reader.alive():
            _unlink(name, dir_fd)
    finally:
        reader.close()


def _merge_histograms(series: dict, exemplars: dict, n: int, reader: FileReader, entries) -> None:
    view = reader.view
    for key, at, width in entries:
        if width != n + 1 and width != n + 1 + EXEMPLAR_WIDTH * n:
            continue  # written with other buckets (another MYSTOCKS_OTEL_HTTP_BUCKETS): unmergeable
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


def _merge_gauges(series: dict, rule: str | None, reader: FileReader, entries) -> None:
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


def _merge_exemplars(kept: dict, reader: FileReader, key: tuple, at: int, width: int) -> None:
    current = kept.get(key)
    for i in range(width):
        found = exemplar_at(reader, at + EXEMPLAR_WIDTH * i)
        if found is None:
            continue
        if current is None:
            current = kept[key] = [None] * width
        if current[i] is None or current[i][3] < found[3]:
            current[i] = found

