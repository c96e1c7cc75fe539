"""This worker's part of a multiprocess run: its slot, its file, and ``fork()``.

:meth:`Store.start` detects the mode (:mod:`.detection`), makes the run directory, claims the
lowest free slot, opens this process's file (:mod:`.fileformat`) and makes it every
recorder's sink; :meth:`Store.merged` reads the run through :class:`.merge.RunMerge`.
"""

from __future__ import annotations

import fcntl
import logging
import os

from ..instruments import Instruments
from .detection import base_directory, detect, remove_stale_runs, run_directory
from .fileformat import ProcessFile
from .merge import RunMerge

_log = logging.getLogger(__name__)


class Store:
    """The run's directory: this process's slot and file, and the merge of every file."""

    def __init__(self, directory: str, instruments: Instruments, master: int, server: str):
        self.directory = directory
        self.instruments = instruments
        self.master = master
        self.server = server
        self.merge = RunMerge(directory, instruments)
        self._slot_fd = None
        self.file: ProcessFile | None = None
        self._open_own_file()

    @classmethod
    def start(cls, instruments: Instruments) -> "Store | None":
        """The store of this worker, or None when this process is no server's worker.

        ``fork()`` is handled by the process state's one fork hook, which calls
        :meth:`after_fork_in_child` on the provider's store.
        """
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
        return cls(directory, instruments, master, server)

    def describe(self) -> str:
        return (f"multiprocess mode: workers of {self.server} master {self.master} share /metrics "
                f"through {self.directory} (this process: slot {self.slot}, pid {os.getpid()})")

    def merged(self) -> dict[str, tuple[list, dict | None]]:
        """``{metric: (items, exemplars)}`` over every file of the run (:class:`RunMerge`)."""
        return self.merge.merged()

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

    def after_fork_in_child(self) -> None:
        """A forked worker (gunicorn --preload): counts made before the fork stay in the
        parent's file; the child starts its own file, slot and totals. The recorders have
        already let go of the parent's file and counts (:meth:`Instruments.after_fork`)."""
        if self.file is not None:
            self.file.close_inherited()
        if self._slot_fd is not None:
            os.close(self._slot_fd)
        self.merge.close()
        self.merge = RunMerge(self.directory, self.instruments)
        self.master = os.getppid()
        self._open_own_file()
        logging.getLogger("gunicorn.error").info("mystocks-otel metrics: %s", self.describe())
