"""Which server runs us, and where its workers keep their files.

:func:`detect` finds the server's master process with no setting (uvicorn ``--workers``,
gunicorn with or without ``--preload``); :func:`run_directory` names one directory per run.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile

PREFIX = "mystocks-otel-"


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def start_time(pid: int) -> str:
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
    return os.path.join(base, f"{PREFIX}{master}-{start_time(master)}")


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
        if not pid.isdigit() or start_time(int(pid)) == started:
            continue
        if started == "0" and os.path.exists(f"/proc/{pid}"):
            continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)

