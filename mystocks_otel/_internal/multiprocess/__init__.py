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
  own pid, and each forked worker moves to a file of its own (the fork hook in ``state``).

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

**Modules.** :mod:`.detection` (which server, which mode, the run directory),
:mod:`.fileformat` (the mmap layout: this process's writer and any worker's reader),
:mod:`.store` (this worker's slot and file, across ``fork()``) and :mod:`.merge` (every
worker's files summed into one view at a scrape).
"""

from .detection import UnsafeDirectoryError
from .store import Store

__all__ = ["Store", "UnsafeDirectoryError"]
