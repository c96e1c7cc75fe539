"""This worker's part of a multiprocess run: its slot, its file, and ``fork()``.

:meth:`Store.start` detects the mode (:mod:`.detection`), makes the run directory, claims the
lowest free slot, opens this process's file (:mod:`.fileformat`) and makes it every
recorder's sink; :meth:`Store.merged` reads the run through :class:`.merge.RunMerge`.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import multiprocessing.util
import os

from ..instruments import Instruments
from .detection import (UnsafeDirectoryError, base_directory, detect, open_run_directory,
                        verify_directory)
from .fileformat import ProcessFile, file_name
from .merge import RunMerge

_log = logging.getLogger(__name__)

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Store:
    """The run's directory: this process's slot and file, and the merge of every file.

    Every file is opened relative to :attr:`dir_fd`, the run directory opened once without
    following links and checked (ours, 0700): a path swapped later cannot redirect it.
    """

    def __init__(self, directory: str, instruments: Instruments, master: int, server: str,
                 dir_fd: int | None = None, app=None):
        if dir_fd is None:
            dir_fd = os.open(directory, _DIRECTORY_FLAGS)
            try:
                verify_directory(dir_fd, directory)
            except BaseException:
                os.close(dir_fd)
                raise
        self.directory = directory
        self.dir_fd = dir_fd
        self.instruments = instruments
        self.app = app  # the app's own instruments (app_metrics.AppInstruments), or None
        self.master = master
        self.server = server
        self.merge = RunMerge(directory, instruments, dir_fd)
        self._slot_fd = None
        self.file: ProcessFile | None = None
        self._open_own_file()

    @classmethod
    def start(cls, instruments: Instruments, base: str | None = None, app=None) -> "Store | None":
        """The store of this worker, or None when this process is no server's worker.

        ``base`` (default: ``/dev/shm``, else the temporary directory) holds this user's
        private directory, ``mystocks-otel.<uid>`` (0700), which holds one directory per run.
        Raises :class:`UnsafeDirectoryError` (one line) when that cannot be had safely: the
        server must not start with values another user could forge.

        ``fork()`` is handled by the process state's one fork hook, which calls
        :meth:`after_fork_in_child` on the provider's store.
        """
        found = detect()
        if found is None:
            return None
        master, server = found
        directory, dir_fd = open_run_directory(base or base_directory(), master)
        store = cls(directory, instruments, master, server, dir_fd=dir_fd, app=app)
        # A worker that ends on purpose says so; one that is killed (OOM, SIGKILL) cannot, and
        # the merge counts it in mystocks.system.worker_crashes. The app's lifespan end marks it
        # too (uvicorn re-raises SIGTERM after a graceful shutdown: no atexit then). atexit runs
        # when gunicorn's workers exit (recycled by --max-requests, stopped) and in spawned
        # workers; multiprocessing's own exit hook in forked ones (they leave by os._exit).
        atexit.register(store.mark_clean_exit)
        multiprocessing.util.Finalize(None, store.mark_clean_exit, exitpriority=100)
        return store

    def describe(self) -> str:
        return (f"multiprocess mode: workers of {self.server} master {self.master} share /metrics "
                f"through {self.directory} (this process: slot {self.slot}, pid {os.getpid()})")

    def merged(self) -> dict[str, tuple[list, dict | None]]:
        """``{metric: (items, exemplars)}`` over every file of the run (:class:`RunMerge`)."""
        return self.merge.merged()

    def app_spec(self, metric: str):
        """The spec of an app instrument some worker described (after :meth:`merged`), or None."""
        found = self.merge.app_specs.get(metric)
        return found.spec if found is not None else None

    def mark_clean_exit(self) -> None:
        """This process is ending on purpose: not a crash (:data:`.merge.CRASHES`). Runs in exit
        hooks: never raises."""
        try:
            if self.file is not None:
                self.file.mark_clean_exit()
        except Exception:  # noqa: BLE001 - at worst a stop is counted as a crash
            _log.debug("mystocks-otel: could not mark this worker's clean exit", exc_info=True)

    def close(self) -> None:
        """Let go of the files (tests; a process's store otherwise lives as long as it)."""
        self.merge.close()
        if self.file is not None:
            self.file.close_inherited()
            self.file = None
        if self._slot_fd is not None:
            os.close(self._slot_fd)
            self._slot_fd = None
        os.close(self.dir_fd)

    # -- this process ---------------------------------------------------------------------
    def _claim_slot(self) -> int:
        slot = 0
        while True:
            fd = os.open(f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self.dir_fd)
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
        self.file = ProcessFile(self.dir_fd, file_name(self.slot), self.directory)
        for recorder in self.instruments:
            recorder.sink_offsets = {}
        self.file.write_all(self.instruments)
        for recorder in self.instruments:
            self.file.attach(recorder)
        if self.app is not None:
            self.app.attach(self.file)  # descriptors, values so far, and every later instrument

    def after_fork_in_child(self) -> None:
        """A forked worker (gunicorn --preload): counts made before the fork stay in the
        parent's file; the child starts its own file, slot and totals. The recorders have
        already let go of the parent's file and counts (:meth:`Instruments.after_fork`)."""
        if self.file is not None:
            self.file.close_inherited()
        if self._slot_fd is not None:
            os.close(self._slot_fd)
        self.merge.close()
        # its own descriptor of the run directory (the inherited one shares a read offset)
        inherited, self.dir_fd = self.dir_fd, os.open(".", _DIRECTORY_FLAGS, dir_fd=self.dir_fd)
        os.close(inherited)
        self.merge = RunMerge(self.directory, self.instruments, self.dir_fd)
        self.master = os.getppid()
        self._open_own_file()
        logging.getLogger("gunicorn.error").info("mystocks-otel metrics: %s", self.describe())


__all__ = ["Store", "UnsafeDirectoryError"]
