"""One process harness: start servers, know when they are ready, and always stop them.

The stack (``mystocks-otel stack``) and every test that starts Prometheus, Alertmanager,
Redis, PostgreSQL, the Collector, VictoriaMetrics or the notification sink go through it::

    with Processes(workdir) as procs:
        redis = procs.start(redis_server(workdir / "redis"))
        ...                                  # redis.url, redis.port, redis.log
    # every child is stopped here, even when the block raised

- Each child runs in its own process group (``start_new_session``), its output goes to
  ``<workdir>/logs/<name>.log``.
- Readiness is polled with a deadline: an HTTP URL answering 2xx, a command exiting 0, or
  a TCP port accepting connections. A child that exits while starting fails at once, with
  the tail of its log. Whatever answers, the listener on the child's port must be the child
  (its process group, read from /proc): a port another process listens on fails the child
  before it starts or while it starts, with one line ("prometheus-a: port N is taken by
  something else (pid P: ...)"), never passing for ready.
- Ports: :class:`PortLease` chooses a plan's ports together, outside the kernel's ephemeral
  range, and holds each with a bound socket until its server starts; :func:`free_port` is a
  lease of one.
- Stopping is identity-checked: a pid is signalled only while ``/proc/<pid>/stat`` still
  shows the start time recorded at spawn and ``/proc/<pid>/exe`` the same program, so a
  recycled pid is never hit (``stack status`` shows it down, ``stack down`` leaves it alone). The group gets
  the spec's stop signal (SIGTERM; PostgreSQL's fast shutdown is SIGINT), then SIGKILL.
- Secrets never go on a command line (``/proc/<pid>/cmdline`` is world-readable): the
  builders take them from 0600 files (:func:`write_private`) or the child's environment.
- ``save()`` writes what runs to ``<workdir>/state.json`` (0600) and ``Processes.attach(workdir)``
  reads it back, so ``stack status`` and ``stack down`` work across CLI invocations;
  ``detach()`` leaves the children running when the ``with`` block ends (``stack up``).

The spec builders at the end (:func:`redis_server`, :func:`postgres_server`,
:func:`prometheus`, :func:`prometheus_console`, :func:`alertmanager`, :func:`otel_collector`,
:func:`victoriametrics`, :func:`jaeger`, :func:`victorialogs`, :func:`sink`, :func:`uvicorn`) hold every command line of the project's servers.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "state.json"
DEFAULT_START_TIMEOUT = 60.0


class ProcessError(RuntimeError):
    """A child did not start or become ready; the message is one line plus its log's tail."""


# -- small helpers ---------------------------------------------------------------------------

#: The lowest port chosen for a server: below it live the well-known services (PostgreSQL
#: 5432, Redis 6379, Prometheus 9090, ...).
PORT_FLOOR = 10000
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
#: Ports this process handed out (PortLease, free_port): none is handed out twice; forgotten
#: when it grows past this many (a long test session).
_HANDED_OUT: set[int] = set()
_HANDED_OUT_MAX = 4096


def port_range(path: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """Where servers' ports are chosen (inclusive): outside the kernel's ephemeral range, which
    every client connection and every bind to port 0 draws from, so that no client takes a
    chosen port before its server binds it. Below that range from PORT_FLOOR, else above it."""
    try:
        low, high = map(int, Path(path).read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - 1 - PORT_FLOOR >= 1000:
        return PORT_FLOOR, low - 1
    if 65535 - high >= 1000:
        return high + 1, 65535
    return PORT_FLOOR, 65535  # the ephemeral range is (nearly) everything: choose anywhere


def _hold(port: int) -> socket.socket | None:
    """A socket bound (not listening) to 127.0.0.1:``port``, or None when anything has the
    port: a server, a client connection, another plan's held socket, a connection in
    TIME_WAIT. Bound without SO_REUSEADDR, so it sees each of those."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


class PortLease:
    """Ports for one plan, by name: chosen together from :func:`port_range` at random, each
    held by a bound socket until :meth:`release`, so no two are the same, no other plan (which
    probes with a bind, as here) gets one, and no client connection takes one meanwhile.
    Release a part's ports right before its server starts (``close()`` releases the rest)::

        with PortLease(["http", "smtp"]) as ports:
            ports["http"], ports["smtp"]   # distinct, free
    """

    def __init__(self, names, *, attempts_per_port: int = 100):
        names = list(names)
        if len(set(names)) != len(names):
            raise ValueError(f"port names repeat: {names}")
        low, high = port_range()
        rng = random.SystemRandom()  # not the seeded module generator: forked workers differ
        self.ports: dict[str, int] = {}
        self._held: dict[int, socket.socket] = {}
        tries = 0
        for name in names:
            while name not in self.ports:
                tries += 1
                if tries > attempts_per_port * len(names):
                    self.close()
                    raise ProcessError(f"no {len(names)} free ports on 127.0.0.1 in {low}-{high} "
                                       f"after {tries - 1} tries")
                port = rng.randint(low, high)
                if port in self._held or port in _HANDED_OUT:
                    continue
                sock = _hold(port)
                if sock is not None:
                    self._held[port], self.ports[name] = sock, port
        if len(set(self.ports.values())) != len(names):  # cannot happen while the sockets are held
            self.close()
            raise ProcessError(f"port lease handed out a port twice: {self.ports}")
        if len(_HANDED_OUT) + len(names) > _HANDED_OUT_MAX:
            _HANDED_OUT.clear()
        _HANDED_OUT.update(self.ports.values())

    def __getitem__(self, name: str) -> int:
        return self.ports[name]

    def held(self) -> list[int]:
        """The ports still held (not yet released)."""
        return sorted(self._held)

    def release(self, *ports: int) -> None:
        """Let the part's server bind these ports now (unknown or released ports are ignored)."""
        for port in ports:
            sock = self._held.pop(port, None)
            if sock is not None:
                sock.close()

    def close(self) -> None:
        self.release(*list(self._held))

    def __enter__(self) -> PortLease:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def free_port() -> int:
    """One free port on 127.0.0.1, as :class:`PortLease` chooses them (outside the ephemeral
    range, never one this process handed out before), released at once: bind it soon, or use
    a PortLease to hold several."""
    with PortLease(["port"]) as lease:
        return lease["port"]


def listener_inodes(port: int) -> set[int]:
    """The socket inodes of every TCP listener on ``port`` (any local address, IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(fields[9]))
    return found


def _socket_inodes(pid: int) -> set[int] | None:
    """The socket inodes ``pid`` holds open, or None when its fds are not ours to read."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own fd, when pid is this process)
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def _family(pid: int) -> tuple[int, int]:
    """(parent pid, process group) of ``pid``, or (0, 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0, 0
    return int(fields[1]), int(fields[2])


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    command = " ".join(" ".join(a.decode(errors="replace") for a in argv).split())  # one line
    return f"pid {pid}: {command[:100]}" if command else f"pid {pid}"


def port_holder(port: int, group: int | None = None) -> str | None:
    """Who else listens on ``port`` ("pid 123: python3 -m ..."), or None when nothing listens
    there or the listener is process ``group``'s (itself, its process group or its children:
    a started part). A listener in no process this user may inspect is "a process of another
    user"."""
    inodes = listener_inodes(port)
    if not inodes:
        return None
    stranger = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        held = _socket_inodes(int(entry))
        if not held or not held & inodes:
            continue
        pid = int(entry)
        if group and (pid == group or group in _family(pid)):
            return None
        stranger = stranger or _describe(pid)
    return stranger or "a process of another user"


def taken_message(name: str, port: int, holder: str) -> str:
    """The one line a port clash is reported with."""
    return f"{name}: port {port} is taken by something else ({holder})"


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def basic_auth_header(auth_file: str | Path) -> dict[str, str]:
    """``{"Authorization": "Basic ..."}`` from a ``user:password`` file (the stack's 0600 one)."""
    import base64

    token = base64.b64encode(Path(auth_file).read_text().strip().encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http_ok(url: str, timeout: float = 2.0, auth_file: str | Path | None = None) -> bool:
    try:
        request = urllib.request.Request(url, headers=basic_auth_header(auth_file) if auth_file else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError, http.client.HTTPException):  # not HTTP at all: an SMTP banner
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError after
    ``timeout`` seconds. An OSError from the predicate counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except OSError as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s (last: {last!r})")
        time.sleep(interval)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or
    None when there is no such process or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def write_private(path: Path, text: str, user: str | None = None) -> Path:
    """Write ``text`` to a new file of mode 0600 (never readable by another user, not even for
    an instant), owned by ``user`` when root; replaces an existing file."""
    path = Path(path)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if user and os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def bcrypt_hash(password: str, cost: int = 10) -> str:
    """A ``$2b$`` bcrypt hash (what Prometheus' and Alertmanager's ``--web.config.file`` take),
    through the system's libcrypt (libxcrypt): no Python package needed."""
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise ProcessError("libcrypt cannot make bcrypt hashes (needs libxcrypt, Debian's libcrypt1)")
    return hashed.decode()


def web_config(path: Path, user: str, password: str) -> Path:
    """An exporter-toolkit ``--web.config.file`` (Prometheus, Alertmanager): basic auth for
    ``user``, mode 0600."""
    return write_private(path, f"basic_auth_users:\n  {user}: '{bcrypt_hash(password)}'\n")


def executable(pid: int) -> str | None:
    """The program the process runs (/proc/<pid>/exe; " (deleted)" after an upgrade dropped),
    or None when there is no such process or it is not ours to look at. Not its command line:
    redis-server and PostgreSQL's children rewrite theirs."""
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return None


def cluster_tls(folder: Path, days: int = 365) -> Path:
    """Mutual TLS for Alertmanager's gossip (``--cluster.tls-config``), in ``folder``: one new
    self-signed certificate for 127.0.0.1 that every peer presents and is the only one it
    trusts, so no process without the 0600 key joins the cluster (and gossips silences in).
    Returns the config file (0600). Needs ``openssl``."""
    openssl = which("openssl")
    if openssl is None:
        raise ProcessError("openssl not installed (apt-get install openssl)")
    cert, key = folder / "gossip.crt", folder / "gossip.key"
    key.unlink(missing_ok=True)
    done = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
                           "-subj", "/CN=mystocks-otel stack gossip", "-addext", "subjectAltName=IP:127.0.0.1",
                           "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
                          capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o077))
    if done.returncode != 0:
        raise ProcessError(f"openssl req exited {done.returncode}: {done.stderr.strip()[-300:]}")
    os.chmod(key, 0o600)
    os.chmod(cert, 0o600)
    return write_private(folder / "alertmanager-cluster-tls.yml", (
        "tls_server_config:\n"
        f"  cert_file: {cert}\n  key_file: {key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {cert}\n"
        "tls_client_config:\n"
        f"  cert_file: {cert}\n  key_file: {key}\n  ca_file: {cert}\n"))


def which(name: str) -> str | None:
    """A binary on PATH, or in /usr/bin, /usr/sbin (root's PATH may lack them)."""
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/bin") / name, Path("/usr/sbin") / name) if p.exists()), None)


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


# -- what to start ---------------------------------------------------------------------------

@dataclass
class Spec:
    """How to start one server and how to tell that it is ready."""

    name: str
    argv: list[str]
    url: str = ""  # where a person or a client reaches it (display, state.json)
    urls: dict[str, str] = field(default_factory=dict)  # its other doors by role (``stack status --json``)
    port: int = 0  # its main port: readiness (when no ready_url/ready_argv) and "still listening"
    ports: list[int] = field(default_factory=list)  # other ports it binds
    ready_url: str | None = None  # readiness: this URL answers 2xx
    ready_argv: list[str] | None = None  # readiness: this command exits 0 (pg_isready)
    auth_file: str = ""  # a 0600 ``user:password`` file: readiness (and the stack's checks) use basic auth
    env: dict[str, str] = field(default_factory=dict)  # on top of os.environ (inherit_env) or alone
    inherit_env: bool = True  # False: the child sees only ``env`` (a test's clean environment)
    cwd: str | None = None
    user: str | None = None  # run as this user (when root); PostgreSQL refuses root
    prepare: list[list[str]] = field(default_factory=list)  # run once, in order, before the start
    creates: str = ""  # prepare is skipped when this path exists (initdb's data directory)
    then: list[list[str]] = field(default_factory=list)  # run once ready, after a prepare (createdb)
    data_dir: str = ""  # a directory of its own outside the workdir: removed by cleanup()
    stop_signal: int = signal.SIGTERM
    start_timeout: float = DEFAULT_START_TIMEOUT
    stop_timeout: float = 10.0


@dataclass
class Process(Spec):
    """A started spec: its pid and the start time that proves the pid is still it."""

    pid: int | None = None
    started: int | None = None  # /proc start time of pid at spawn
    exe: str = ""  # /proc/<pid>/exe at spawn ("" in older state files: not compared)
    log: str = ""
    state: str = "new"  # new, starting, up, failed, stopped

    def alive(self) -> bool:
        """Still the process we started (same pid, start time and program), not a zombie."""
        if not self.pid or self.started is None or start_time(self.pid) != self.started:
            return False
        return not self.exe or executable(self.pid) == self.exe

    def ready(self) -> bool:
        if not self.alive():
            return False
        if self.ready_url:
            return http_ok(self.ready_url, auth_file=self.auth_file or None)
        if self.ready_argv:
            return subprocess.run(self.ready_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=10).returncode == 0
        return port_open(self.port) if self.port else True

    def port_taken(self, ports: list[int] | None = None) -> str | None:
        """The one line when another process listens on one of this part's ports (its main
        port unless ``ports`` says), or when it exited and the last lines of its log say its
        bind found the address in use; None otherwise. Run while it starts, so that a clash is
        never taken for readiness."""
        alive = self.alive()
        for port in [self.port] if ports is None else ports:
            if port and (holder := port_holder(port, self.pid if alive else None)):
                return taken_message(self.name, port, holder)
        if self.port and not alive and "address already in use" in self.log_tail().lower():
            return taken_message(self.name, self.port, "its log: address already in use")
        return None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = Path(self.log).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) or "no output"

    def signal(self, signum: int) -> bool:
        """Signal the process group, only while the pid is still ours."""
        if not self.alive():
            return False
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:  # not a group leader after all: the process alone
            os.kill(self.pid, signum)
        return True

    def stop(self) -> None:
        """The stop signal to the group, then SIGKILL after ``stop_timeout``; reaps our child."""
        if self.signal(self.stop_signal):
            try:
                wait_until(self._gone, self.stop_timeout, f"{self.name} to stop", 0.05)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                try:
                    wait_until(self._gone, 5, f"{self.name} killed", 0.05)
                except TimeoutError:
                    pass
            # Whatever the leader left in its group (a worker, a forked helper) goes too: the
            # group outlives its leader, so its id cannot have been reused yet.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.pid:
            _reap(self.pid)
        if self.state != "failed":
            self.state = "stopped"

    def _gone(self) -> bool:
        _reap(self.pid)
        return not self.alive()


#: Popen objects of the children this process started, by pid (polled to reap them).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is our exited child, so that it does not linger as a zombie."""
    popen = _CHILDREN.get(pid)
    if popen is not None:
        if popen.poll() is not None:
            del _CHILDREN[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _as_user(user: str | None) -> dict:
    """Popen arguments that drop root to ``user`` (nothing when not root or no user)."""
    if not user or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _user_env(user: str | None) -> dict:
    if not user or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}


# -- the harness -----------------------------------------------------------------------------

class Processes:
    """The children of one workdir; a context manager that stops them all on exit."""

    def __init__(self, workdir: Path | str, *, state_file: bool = False, create: bool = True):
        self.workdir = Path(workdir).resolve()
        if create:
            (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.children: list[Process] = []
        self.state_file = state_file  # write state.json after every change (the stack does)
        self.failed = False
        self._detached = False

    # -- the context manager
    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        if not self._detached:
            self.stop_all()
            self.cleanup()

    def detach(self) -> None:
        """Leave the children running when the ``with`` block ends (the state file knows them)."""
        self._detached = True
        self.save()

    @classmethod
    def attach(cls, workdir: Path | str) -> Processes:
        """The processes a previous ``save()`` recorded in ``workdir`` (none if no state).
        Leaving its ``with`` block stops them: use ``detach()`` to only look."""
        procs = cls(workdir, state_file=True, create=False)
        path = procs.workdir / STATE_FILE
        if path.exists():
            state = json.loads(path.read_text())
            procs.failed = state.get("failed", False)
            procs.children = [Process(**c) for c in state["components"]]
        else:
            procs.state_file = False
        return procs

    def save(self) -> None:
        """The state (commands, environments: a database password) in a 0600 file."""
        state = {"failed": self.failed, "components": [asdict(c) for c in self.children]}
        path = self.workdir / STATE_FILE
        tmp = self.workdir / (STATE_FILE + ".new")
        write_private(tmp, json.dumps(state, indent=2))
        os.replace(tmp, path)

    def _changed(self) -> None:
        if self.state_file:
            self.save()

    # -- looking up
    def __getitem__(self, name: str) -> Process:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def __iter__(self):
        return iter(self.children)

    # -- starting
    def add(self, spec: Spec) -> Process:
        """Record ``spec`` without starting it (the stack writes its whole plan first)."""
        proc = Process(**asdict(spec))
        self.children.append(proc)
        self._changed()
        return proc

    def start(self, spec: Spec | Process | str, *, wait: bool = True) -> Process:
        """Start ``spec`` (or a recorded or stopped child, by name) and, unless ``wait`` is
        False, wait until it is ready. ProcessError when it exits or is not ready in time; a
        child that failed is stopped again before the error is raised."""
        if isinstance(spec, str):
            proc = self[spec]
        elif isinstance(spec, Process):
            proc = spec
        else:
            proc = self.add(spec)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        log = self.workdir / "logs" / f"{proc.name}.log"
        proc.log = str(log)
        user_args = _as_user(proc.user)
        env = {**(os.environ if proc.inherit_env else {}), **_user_env(proc.user), **proc.env}
        # A port another process listens on fails the part at once, before anything runs.
        taken = next(filter(None, (taken_message(proc.name, port, holder) for port in [proc.port, *proc.ports]
                                   if port and (holder := port_holder(port)))), None)
        if taken:
            self._fail(proc)
            raise ProcessError(taken)
        fresh = bool(proc.prepare) and not (proc.creates and Path(proc.creates).exists())
        if fresh:
            self._run(proc, proc.prepare, env, user_args)
        with log.open("ab") as out:
            child = subprocess.Popen(proc.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=proc.cwd or self.workdir, start_new_session=True,
                                     **user_args)
        proc.pid, proc.state = child.pid, "starting"
        proc.started = start_time(child.pid)
        proc.exe = executable(child.pid) or ""  # Popen returns after the exec: the new program
        _CHILDREN[child.pid] = child
        self._changed()
        if wait:
            self.wait_ready(proc)
            if fresh and proc.then:
                try:
                    self._run(proc, proc.then, env, user_args)
                except ProcessError:
                    proc.stop()
                    raise
        return proc

    def _run(self, proc: Process, commands: list[list[str]], env: dict, user_args: dict) -> None:
        """One-off commands of a spec (initdb, createdb), output appended to its log."""
        with open(proc.log, "ab") as out:
            for argv in commands:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=proc.cwd, timeout=proc.start_timeout, **user_args)
                if done.returncode != 0:
                    proc.state = "failed"
                    self.failed = True
                    self._changed()
                    raise ProcessError(f"{proc.name}: {Path(argv[0]).name} exited {done.returncode}: "
                                       f"{proc.log_tail()}")

    def wait_ready(self, proc: Process, timeout: float | None = None) -> float:
        """Seconds until ``proc`` was ready; ProcessError if it exits or the deadline passes."""
        began = time.monotonic()
        timeout = proc.start_timeout if timeout is None else timeout
        looked = began
        taken = None
        while True:
            # Ready only when the part itself answers: a listener on its port that is not the
            # part (two parts given one port) fails it with one line, never passes as ready.
            if proc.ready():
                taken = proc.port_taken()
                if taken is None:
                    proc.state = "up"
                    self._changed()
                    return time.monotonic() - began
                break
            if not proc.alive():
                taken = proc.port_taken()
                reason = "exited"
                break
            if time.monotonic() - looked >= 1.0:  # answered by something else: fail fast
                looked = time.monotonic()
                if taken := proc.port_taken():
                    break
            if time.monotonic() - began > timeout:
                reason = f"not ready within {timeout:g} s"
                break
            time.sleep(0.05)  # the poll interval of the readiness wait
        self._fail(proc)
        raise ProcessError(taken or f"{proc.name} {reason}: {proc.log_tail()}")

    def _fail(self, proc: Process) -> None:
        proc.state = "failed"
        self.failed = True
        proc.stop()
        proc.state = "failed"
        self._changed()

    # -- stopping
    def stop(self, name: str) -> Process:
        """Stop one child (a real outage); it stays recorded and ``start(name)`` restarts it."""
        proc = self[name]
        proc.stop()
        self._changed()
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - one stubborn child must not keep the others running
                pass
        self._changed()

    def still_listening(self) -> list[str]:
        return [f"{c.name}:{port}" for c in self.children for port in [c.port, *c.ports]
                if port and port_open(port)]

    def cleanup(self) -> None:
        """Remove the children's own data directories (PostgreSQL's lives outside the workdir)."""
        for proc in self.children:
            if proc.data_dir:
                shutil.rmtree(proc.data_dir, ignore_errors=True)


# -- spec builders: every server the project starts ------------------------------------------

def redis_server(data_dir: Path, port: int | None = None, binary: str | None = None,
                 password: str | None = None) -> Spec:
    """A throwaway redis-server: no persistence, loopback only (starts in ~20 ms).

    With ``password`` every client must AUTH first (``requirepass``, from a 0600 config file
    in ``data_dir``: never on the command line, which every local user can read); the URL
    carries it."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = binary or which("redis-server")
    if binary is None:
        raise ProcessError("redis-server not installed (apt-get install redis-server)")
    config = []
    if password:
        config = [str(write_private(data_dir / "redis.conf", f"requirepass {password}\n"))]
    return Spec("redis", [binary, *config, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(data_dir)],
                url=f"redis://{f':{password}@' if password else ''}127.0.0.1:{port}/0", port=port,
                start_timeout=20)


def private_dir(prefix: str, user: str | None = None) -> Path:
    """A new 0700 directory outside any test's tmp dir, owned by ``user`` when root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o700)
    if user and os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def postgres_server(port: int | None = None, *, name: str = "postgresql", database: str = "postgres",
                    bindir: Path | None = None, password: str | None = None) -> Spec:
    """A throwaway PostgreSQL cluster: initdb (no fsync) then the postmaster itself.

    Superuser ``postgres`` with a generated password (``password`` to choose it): every
    connection, TCP on 127.0.0.1 or the unix socket, is ``scram-sha-256``, so another local
    user cannot log in (and run ``COPY ... FROM PROGRAM`` as the server's OS user). The URL
    carries the password; the password file initdb read stays in the cluster's directory, 0600.

    As root it runs as the ``postgres`` user, in a private 0700 directory of its own outside
    the workdir (pytest's tmp dirs are 0700 root's), which is also its unix socket directory.
    ``cleanup()`` removes it.
    """
    import secrets

    bindir = bindir or postgres_bindir()
    if bindir is None:
        raise ProcessError("PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ProcessError("running as root needs the postgres user (apt-get install postgresql)") from None
        user = "postgres"
    port = port or free_port()
    password = password or secrets.token_hex(16)
    home = private_dir("mystocks-pg-", user)
    data = home / "data"
    pwfile = write_private(home / "password", password + "\n", user)
    return Spec(name, [str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                       "-p", str(port), "-k", str(home), "-c", "fsync=off", "-c", "full_page_writes=off",
                       "-c", "synchronous_commit=off"],
                url=f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}", port=port,
                ready_argv=[str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                            "-U", "postgres", "-d", "postgres"],
                user=user, data_dir=str(home), creates=str(data), cwd=str(home),
                env={"PGPASSFILE": "/dev/null", "PGPASSWORD": password},  # createdb's; never in argv
                prepare=[[str(bindir / "initdb"), "-D", str(data), "-A", "scram-sha-256",
                          f"--pwfile={pwfile}", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]],
                then=[] if database == "postgres" else [[str(bindir / "createdb"), "-h", "127.0.0.1",
                                                          "-p", str(port), "-U", "postgres", database]],
                stop_signal=signal.SIGINT, start_timeout=120)


def prometheus(config_file: Path, data_dir: Path, port: int | None = None, *flags: str,
               name: str = "prometheus", binary: str | None = None, cwd: str | None = None) -> Spec:
    """Prometheus: 3.16 built from its Go module (``gotools.binary(root, "prometheus")``);
    ``cwd`` is where a build without built-in web assets looks for ``static/``."""
    port = port or free_port()
    if binary is None:
        raise ProcessError("no prometheus binary given (mystocks_otel_dev.stack.gotools builds it: "
                           "scripts/build-go-tool.sh prometheus)")
    url = f"http://127.0.0.1:{port}"
    return Spec(name, [binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
                       f"--web.listen-address=127.0.0.1:{port}", *flags],
                url=url, port=port, ready_url=f"{url}/-/ready", start_timeout=30, cwd=cwd)


def prometheus_console(config_file: Path, data_dir: Path, port: int | None = None, *,
                       name: str = "prometheus-ui", binary: str | None = None) -> Spec:
    """Debian's Prometheus 2.42, for its web UI only: no scrapes and no rules, it reads a
    Prometheus 3 replica through ``remote_read`` (its config). The Prometheus built from the Go
    module serves its API but has no web UI (the UI is an npm build of the release process)."""
    port = port or free_port()
    binary = binary or which("prometheus")
    assets = Path("/usr/share/prometheus/web")
    if binary is None or not assets.is_dir():
        raise ProcessError("Debian's prometheus not installed, whose web UI the stack serves "
                           "(apt-get install prometheus)")
    url = f"http://127.0.0.1:{port}"
    return Spec(name, [binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
                       f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
                       "--web.page-title=MyStocks Prometheus (read-only console)"],
                url=url + "/graph", port=port, ready_url=f"{url}/-/ready", start_timeout=30)


def alertmanager(config_file: Path, data_dir: Path, port: int | None = None, *flags: str,
                 name: str = "alertmanager", cluster_port: int | None = None,
                 peers: list[int] = (), binary: str | None = None, web_config_file: Path | None = None,
                 auth_file: Path | None = None, cluster_tls_file: Path | None = None) -> Spec:
    """Alertmanager alone (no gossip), or a cluster peer when ``cluster_port`` is given.

    ``web_config_file`` (see :func:`web_config`) puts every endpoint, the silences API too,
    behind basic auth; ``auth_file`` is the matching ``user:password`` file readiness uses.
    ``cluster_tls_file`` (see :func:`cluster_tls`) makes the gossip mutual TLS: without it,
    anyone who reaches the cluster port can join as a peer and gossip silences in."""
    port = port or free_port()
    if binary is None:
        raise ProcessError("no alertmanager binary given (mystocks_otel_dev.stack.gotools builds it: "
                           "scripts/build-go-tool.sh alertmanager)")
    url = f"http://127.0.0.1:{port}"
    if cluster_port:
        cluster = [f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                   f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                   *(f"--cluster.peer=127.0.0.1:{p}" for p in peers),
                   *([f"--cluster.tls-config={cluster_tls_file}"] if cluster_tls_file else [])]
    else:
        cluster = ["--cluster.listen-address="]
    web = [f"--web.config.file={web_config_file}"] if web_config_file else []
    return Spec(name, [binary, f"--config.file={config_file}", f"--storage.path={data_dir}",
                       f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
                       *web, *cluster, *flags],
                url=url, port=port, ports=[cluster_port] if cluster_port else [],
                ready_url=f"{url}/-/ready", auth_file=str(auth_file or ""), start_timeout=30)


def otel_collector(binary: str, config_files: list[Path], env: dict[str, str], port: int,
                   ports: list[int] = (), name: str = "otel-collector") -> Spec:
    """The Collector; ready when its OTLP/HTTP ``port`` listens."""
    return Spec(name, [binary, *(f"--config={f}" for f in config_files)],
                url=f"http://127.0.0.1:{port}", port=port, ports=list(ports), env=env, start_timeout=30)


#: VictoriaMetrics' destructive and admin endpoints, each locked by an ``authKey`` when
#: :func:`victoriametrics` gets ``auth_key_file`` (delete_series, snapshots, merges, caches,
#: reloads, profiles, its flags and config). Writes, queries and force_flush stay open.
VICTORIAMETRICS_AUTH_KEYS = ("deleteAuthKey", "snapshotAuthKey", "forceMergeAuthKey", "search.resetCacheAuthKey",
                             "reloadAuthKey", "pprofAuthKey", "flagsAuthKey", "configAuthKey")


def victoriametrics(binary: str, data_dir: Path, port: int | None = None, *flags: str,
                    name: str = "victoriametrics", auth_key_file: Path | None = None) -> Spec:
    """VictoriaMetrics; ``-search.latencyOffset=0s`` so queries see new samples at once.

    ``auth_key_file`` (a 0600 file) is the ``authKey`` of every endpoint in
    :data:`VICTORIAMETRICS_AUTH_KEYS`; VictoriaMetrics reads it (``file://``), so the key is
    never on the command line, which every local user can read in /proc."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    keys = [f"-{flag}=file://{Path(auth_key_file).resolve()}" for flag in VICTORIAMETRICS_AUTH_KEYS] \
        if auth_key_file else []
    return Spec(name, [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data_dir}",
                       "-search.latencyOffset=0s", *keys, *flags],
                url=url, port=port, ready_url=f"{url}/health", start_timeout=30, stop_timeout=15)


def jaeger(binary: str, config_file: Path, *, query_port: int, otlp_grpc_port: int, otlp_http_port: int,
           health_port: int, telemetry_port: int, query_grpc_port: int, max_traces: int = 20000,
           name: str = "jaeger") -> Spec:
    """Jaeger v2 (all in one: OTLP in, bounded in-memory storage, query API) on loopback ports;
    ``config_file`` is jaeger/jaeger.yaml, whose addresses are ``${env:JAEGER_*}``."""
    url = f"http://127.0.0.1:{query_port}"
    env = {"JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{query_port}",
           "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{query_grpc_port}",
           "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{otlp_grpc_port}",
           "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp_http_port}",
           "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}",
           "JAEGER_TELEMETRY_HOST": "127.0.0.1", "JAEGER_TELEMETRY_PORT": str(telemetry_port),
           "JAEGER_MAX_TRACES": str(max_traces)}
    urls = {"query": url, "trace": url + "/api/traces/{trace_id}", "ui": url + "/",
            "otlp_http": f"http://127.0.0.1:{otlp_http_port}", "otlp_grpc": f"127.0.0.1:{otlp_grpc_port}",
            "health": f"http://127.0.0.1:{health_port}/status", "metrics": f"http://127.0.0.1:{telemetry_port}/metrics"}
    return Spec(name, [binary, f"--config={config_file}"], url=url, urls=urls, port=query_port,
                ports=[otlp_grpc_port, otlp_http_port, health_port, telemetry_port, query_grpc_port],
                ready_url=f"{url}/api/services", env=env, start_timeout=30)


def victorialogs(binary: str, data_dir: Path, port: int | None = None, *flags: str,
                 retention: str = "7d", max_disk_bytes: int = 1 << 30, name: str = "victorialogs") -> Spec:
    """VictoriaLogs: OTLP logs at ``/insert/opentelemetry/v1/logs``, LogsQL at
    ``/select/logsql/query``; bounded by ``-retentionPeriod`` and a disk cap (the oldest days
    go first)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return Spec(name, [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data_dir}",
                       f"-retentionPeriod={retention}", f"-retention.maxDiskSpaceUsageBytes={max_disk_bytes}",
                       *flags],
                url=url + "/select/vmui/", port=port, ready_url=f"{url}/health", start_timeout=30, stop_timeout=15,
                urls={"query": f"{url}/select/logsql/query", "otlp_http": f"{url}/insert/opentelemetry/v1/logs",
                      "ui": f"{url}/select/vmui/", "metrics": f"{url}/metrics"})


def sink(record: Path, http_port: int | None = None, smtp_port: int | None = None,
         name: str = "sink") -> Spec:
    """The notification sink (``mystocks_otel_dev.stack.sink``): HTTP and SMTP on loopback."""
    http_port, smtp_port = http_port or free_port(), smtp_port or free_port()
    url = f"http://127.0.0.1:{http_port}"
    return Spec(name, [sys.executable, "-m", "mystocks_otel_dev.stack.sink", "--http-port", str(http_port),
                       "--smtp-port", str(smtp_port), "--record", str(record)],
                url=url + "/", port=http_port, ports=[smtp_port], ready_url=f"{url}/-/ready", start_timeout=30)


def uvicorn(app: str, port: int | None = None, *args: str, env: dict[str, str] | None = None,
            name: str = "uvicorn", ready_path: str = "/health", cwd: str | None = None) -> Spec:
    """An ASGI app under uvicorn (the demo: ``mystocks_otel_dev.demo.app:create_app --factory``)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return Spec(name, [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args],
                url=url, port=port, ready_url=url + ready_path, env=dict(env or {}), cwd=cwd, start_timeout=60)
