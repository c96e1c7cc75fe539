"""Which server runs us, and where its workers keep their files.

:func:`detect` finds the server's master process with no setting (uvicorn ``--workers``,
gunicorn with or without ``--preload``); :func:`open_run_directory` makes (or joins) one
directory per run inside this user's private base, checked without following links.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import stat
import sys
import tempfile

BASE_PREFIX = "mystocks-otel."


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


class UnsafeDirectoryError(RuntimeError):
    """No safe directory for the run's files: ``str(error)`` is one line naming the path and
    why. Raised from set-up; the server must not start with values it cannot trust."""


_DIRECTORY_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
                    | getattr(os, "O_CLOEXEC", 0))  # (the store itself needs POSIX: fcntl)


def base_directory() -> str:
    """Where the private base goes: ``/dev/shm`` (RAM) when writable, else the temp directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def private_base(base: str) -> str:
    """This user's private directory under ``base``: ``<base>/mystocks-otel.<uid>``, 0700.
    (Not ``mystocks-otel-...``: earlier versions removed those they did not recognise.)"""
    return os.path.join(base, f"{BASE_PREFIX}{os.getuid()}")


def verify_directory(fd: int, path: str) -> None:
    """``fd`` (opened without following links) is a directory of ours, mode 0700."""
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectoryError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeDirectoryError(f"{path} belongs to uid {info.st_uid}, not to this user "
                                   f"(uid {os.getuid()}): remove it, or run as its owner")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeDirectoryError(f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, expected "
                                   "0700: another user may have written there; remove it")


def open_private_directory(name: str, parent_fd: int | None, path: str) -> int:
    """Make ``name`` (0700; relative to ``parent_fd``, if given) unless it exists, open it without
    following a link and check it is ours and 0700. Returns its fd; raises
    :class:`UnsafeDirectoryError` otherwise."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass  # another worker of the run made it, or someone else did: checked below
    except OSError as exc:
        raise UnsafeDirectoryError(f"cannot create {path}: {exc.strerror}") from None
    try:
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafeDirectoryError(f"{path} is a symbolic link, not a directory of ours: "
                                       "remove it") from None
        if exc.errno == errno.ENOTDIR:
            raise UnsafeDirectoryError(f"{path} is not a directory: remove it") from None
        raise UnsafeDirectoryError(f"cannot open {path}: {exc.strerror}") from None
    try:
        verify_directory(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_run_directory(base: str, master: int) -> tuple[str, int]:
    """The run's directory ``<base>/mystocks-otel.<uid>/<master pid>-<start time>`` (made,
    or joined, and checked), and an fd of it that every file of the run is opened relative
    to. Raises :class:`UnsafeDirectoryError` (one line) when it cannot be had safely."""
    base_path = private_base(base)
    base_fd = open_private_directory(base_path, None, base_path)
    try:
        remove_stale_runs(base_path)
        name = run_name(master)
        path = os.path.join(base_path, name)
        return path, open_private_directory(name, base_fd, path)
    finally:
        os.close(base_fd)


def run_name(master: int) -> str:
    return f"{master}-{start_time(master)}"


def remove_stale_runs(base: str) -> None:
    """Remove run directories (in this user's private base) whose master process is gone
    (or is another process now)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid, _, started = name.partition("-")
        if not pid.isdigit() or not started.isdigit() or start_time(int(pid)) == started:
            continue
        if started == "0" and os.path.exists(f"/proc/{pid}"):
            continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)  # fd-based: no link followed
