"""One listening socket for the standalone port across every worker of a run, kept by a keeper.

Workers come and go (gunicorn ``--max-requests``, a SIGKILL, uvicorn's restarts); the standalone
metrics port must not. The app's own port survives recycling because the server's master holds
its listening socket and every worker accepts from that one socket: a connection that arrives
while no worker is ready waits in the socket's queue. The master is not ours, so the first
worker that binds the standalone port starts a **keeper**: a tiny process (the standard library
only, no import of ours) that holds the listening socket for the rest of the run and hands a
descriptor of it to every later worker. Every live worker accepts from the same queue, and
while all of them are booting, scrapes wait in the queue instead of being refused.

- The keeper listens on an abstract Unix socket named after the run (master pid and start time)
  and the port. It hands the descriptor (``SCM_RIGHTS``) only to a peer of its own user
  (``SO_PEERCRED``): another local user gets nothing, and cannot bind the port either (it is
  bound without ``SO_REUSEPORT``).
- It exits when the run's master is gone (checked every second, by pid and start time), or
  when told to by :func:`stop_keeper` (tests).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

KEEPER = r'''
import os, socket, struct, sys, time
fd, name, master, started = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
listener = socket.socket(fileno=fd)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    server.bind("\0" + name)
except OSError:
    sys.exit(0)  # another keeper of this run and port
server.listen(64)
server.settimeout(1.0)
uid = os.getuid()
creds = struct.Struct("3i")


def master_alive():
    try:
        with open(f"/proc/{master}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode() == started
    except (OSError, IndexError):
        return False


while master_alive():
    try:
        conn, _ = server.accept()
    except OSError:
        continue
    with conn:
        try:
            pid, peer_uid, gid = creds.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, creds.size))
            request = conn.recv(16)
            if peer_uid == uid and request == b"stop":
                break
            if peer_uid == uid and request == b"fd":
                socket.send_fds(conn, [b"ok"], [listener.fileno()])
        except OSError:
            pass
'''


def _name(master: int, started: str, port: int) -> str:
    return f"mystocks-otel-port-{master}-{started}-{port}"


def _ask(name: str, request: bytes, timeout: float = 1.0) -> socket.socket | None:
    """Send ``request`` to the keeper; for ``fd``, the listening socket it holds."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect("\0" + name)
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.getuid():  # someone else's socket under our name: never use it
                return None
            conn.sendall(request)
            if request != b"fd":
                return None
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 16, 1)
        except OSError:
            return None
    if not fds:
        return None
    listener = socket.socket(fileno=fds[0])
    if listener.type != socket.SOCK_STREAM or not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        listener.close()
        return None
    return listener


def shared_listener(master: int, started: str, port: int, bind, wait_seconds: float = 5.0):
    """The run's listening socket for ``port``: from the keeper when there is one, else bound
    now by ``bind()`` (which raises OSError) and handed to a new keeper.

    Raises OSError when the port cannot be had (taken by another process).
    """
    name = _name(master, started, port)
    deadline = time.monotonic() + wait_seconds
    while True:
        listener = _ask(name, b"fd")
        if listener is not None:
            return listener
        try:
            listener = bind()
        except OSError:
            # a sibling may have just bound it, its keeper still starting: ask again, bounded
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
            continue
        _start_keeper(listener, name, master, started)
        return listener


def _start_keeper(listener: socket.socket, name: str, master: int, started: str) -> None:
    subprocess.Popen([sys.executable, "-I", "-S", "-c", KEEPER, str(listener.fileno()), name,
                      str(master), started], pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def stop_keeper(master: int, started: str, port: int) -> None:
    _ask(_name(master, started, port), b"stop")
