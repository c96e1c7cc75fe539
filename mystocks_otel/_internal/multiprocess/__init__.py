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

**One directory per run**, ``<base>/mystocks-otel.<uid>/<master pid>-<master start time>``,
with ``<base>`` ``/dev/shm`` (RAM) when writable, else the temporary directory. A new run has a
new master, hence a new directory: files of a previous run never leak into its totals.
Directories whose master is gone are removed when a run starts.

**Against other local users.** ``<base>`` is shared (``/dev/shm`` is world-writable) and the
names are predictable, so nothing there is trusted by name: ``mystocks-otel.<uid>`` is made
with ``mkdir(0o700)`` (never ``exist_ok`` through a link), opened with
``O_DIRECTORY | O_NOFOLLOW`` and checked with ``fstat`` (ours, mode 0700, a directory); the
run directory inside is made and checked the same way, relative to that descriptor. Every
file is then opened relative to the run directory's descriptor, without following links;
the files we make are made with ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600. A path swapped
after the check cannot redirect anything. When the base is a link, another user's, not a
directory or not 0700, :class:`UnsafeDirectoryError` (one line naming the path and why) stops
set-up: a server must not start with values another user could forge, nor fall back silently
to single-process mode (each scrape would then answer for one worker).

**Files.** ``<slot>-<pid>-<128-bit random id>.db``: its identity is the random id, never the
PID alone (PIDs are reused: a replacement with a dead worker's PID makes a new file). An
8-byte header (bytes used), then entries
``[u32 key length][u32 value count][key: JSON [metric, label values]][padding][doubles]``.
Entries are only appended; values are written in place through a ``memoryview`` of the
``mmap`` (about 0.1 us): a worker killed by SIGKILL has already written every value it
counted (the kernel keeps the pages of a shared mapping). Counters hold their total;
gauges and up-down counters ``[value, time]``; histograms their bucket counts, the sum and,
for exemplar histograms, five numbers per bucket (trace id high/low, span id, value, time).

**Liveness.** Each worker holds an exclusive ``flock`` on its file for its lifetime; the
kernel drops it when the process dies, however it dies. A reader that can take a shared
lock on a file knows its writer is dead.

**Crashes.** A worker's file starts with an exit entry at 0; a worker that shuts down on purpose
(its app's lifespan ends, atexit, multiprocessing's exit hook) sets it to 1. A dead worker's
file without it was killed (OOM, SIGKILL, a hung worker its server killed): the merge counts it
in ``mystocks.system.worker_crashes`` (kept in ``dead.totals``), which ApiFrequentRestarts adds
to the server's restarts. Recycled workers (``--max-requests``) are not crashes.

**Dead workers' files are compacted** (:mod:`.merge`): the first scrape after a worker died
folds its file into ``dead.totals`` (counters and histograms bucket by bucket, the latest
exemplar of each bucket) under an exclusive ``flock`` of ``compact.lock``, written to a
temporary name, renamed, then the folded files unlinked. Scrapes read under a shared lock of
the same file, so they never count a file twice nor miss one. Disk use and a new worker's
first scrape stay bounded however many workers died.

**Merging** (:attr:`MetricSpec.multiprocess`): counters and histograms add up the files of
every worker of the run, dead ones included, so totals never go backwards when a worker is
replaced (``max`` for totals copied from elsewhere). Gauges and up-down counters read only
live workers: ``sum``, ``max``, ``min``, ``latest`` (by write time), or ``worker``: one series
per live worker, labelled with its *slot* (0, 1, 2...: the lowest free ``slot-<n>.lock`` it
could lock), which a replacement worker reuses, so the label stays bounded. Pool gauges are
per worker: a pool belongs to one process, and a sum would hide one worker's exhausted pool.
Exemplars: the latest of each bucket over all files.

**The app's own OpenTelemetry instruments** (:mod:`..app_metrics`) take the same path: each
worker writes a descriptor entry (``"\0meta"``: name, kind, unit, description, buckets, scope)
before an instrument's first series, so a worker renders instruments only another worker made,
and ``dead.totals`` keeps the descriptors of what it folded. Counters, histograms and
synchronous up-down counters add up over every worker, dead ones included; gauges are one series
per live worker (``worker`` label); observable counters add up each worker's last observation
(dead included), observable up-down counters the live workers' last observations.

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

**Limits.** Values are written without a lock between processes, so a scrape may see a
histogram bucket a moment before its sum. Detection reads ``/proc`` (Linux); elsewhere, and
under other servers (hypercorn, granian), each worker answers for itself. Another local user
who plants ``<base>/mystocks-otel.<uid>`` before the first run can stop multiprocess set-up
(one line names the path; remove it), never forge a value.

**Modules.** :mod:`.detection` (which server, which mode, the run directory),
:mod:`.fileformat` (the mmap layout: this process's writer and any worker's reader),
:mod:`.store` (this worker's slot and file, across ``fork()``) and :mod:`.merge` (every
worker's files summed into one view at a scrape; dead workers' files compacted).
"""

from .store import Store  # first: fcntl, POSIX only (ImportError elsewhere)
from .detection import UnsafeDirectoryError

__all__ = ["Store", "UnsafeDirectoryError"]
