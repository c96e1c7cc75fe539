"""The standalone metrics port (``OTEL_EXPORTER_PROMETHEUS_PORT``): the same three endpoints,
the same token, on their own port, and never at the app's expense.

**What serves it.** An :mod:`asyncio` server of the standard library on one daemon thread, with
the request head parsed by :func:`http.client.parse_headers` (the parser ``http.server`` uses)
and the body rendered by :func:`mystocks_otel.endpoints.answer` on a two-thread pool, so that
this door answers exactly as the app's port does (``/metrics`` demands
``MYSTOCKS_OTEL_METRICS_TOKEN`` when it is set). Why not ``http.server``: it spends one thread
and one descriptor per connection for as long as the client likes (no timeout, backlog 5), so
about 1,010 half-open connections under ``ulimit -n 1024`` took every descriptor of the process
and the app's own port with them. Why not uvicorn or another server: the library does not
depend on one (the host app may run under any ASGI server), and adding one for three read-only
endpoints is a heavy dependency. Here an idle connection costs a descriptor and no thread, and:

- at most :data:`MAX_CONNECTIONS` connections are open at once. When all are taken and a new
  one waits, the oldest connection still without its request head (older than
  :data:`EVICT_AFTER_SECONDS`) is closed for it: a slowloris cannot hold the door, and a scraper,
  which sends its request at once, is the newest and never the one closed; when every
  open connection is being answered, new ones wait in the kernel's listen queue
  (:data:`BACKLOG`), bounded by the kernel;
- the request head must arrive within :data:`HEADER_TIMEOUT_SECONDS` and fit in
  :data:`MAX_HEAD_BYTES` (else 431); the answer must be taken within
  :data:`WRITE_TIMEOUT_SECONDS`;
- every answer says ``Connection: close`` and the connection is closed after it, so a body sent
  with a GET is never read as a second request.

**Several workers.** Under uvicorn ``--workers`` or gunicorn (multiprocess mode), the workers of
a run share one listening socket, as they share the app's: the first worker to bind it starts a
keeper process that holds it for the rest of the run and hands it to every later worker
(:mod:`.port_keeper`). Every live worker accepts from it and answers with the merged view; while
every worker is being replaced, scrapes wait in its queue instead of being refused. The socket is
bound without ``SO_REUSEPORT``: no other process, of this user or another, can share the port.

**The app's port wins.** The port is bound once the app's server listens (uvicorn binds after
the lifespan's start-up, so the binder waits for that), and never on a port this process already
listens on: :func:`serve` then logs one line naming ``OTEL_EXPORTER_PROMETHEUS_PORT`` and the
clash, and the app runs without the standalone port. A port taken by another process is said
the same way.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import io
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import urlsplit

from .. import endpoints
from . import state

_log = logging.getLogger(__name__)

VARIABLE = "OTEL_EXPORTER_PROMETHEUS_PORT"
MAX_CONNECTIONS = 64          # open at once; the rest wait in the listen queue or evict a slow one
#: the kernel's listen queue (clipped to net.core.somaxconn, 4096 on current kernels). Larger than
#: what one attacker holds open under ``ulimit -n 1024``: while it is not full, a scraper's
#: connection waits in it; a full queue drops the SYN, and its retries (1, 3, 7 s later) run past
#: a scrape timeout (a 128-entry queue did under a 1,100-connection slowloris, once in ten).
BACKLOG = 4096
HEADER_TIMEOUT_SECONDS = 5.0  # the whole request head, from accept
WRITE_TIMEOUT_SECONDS = 10.0  # the whole answer
EVICT_AFTER_SECONDS = 0.1     # a connection still without its head after this may be closed for a new one
MAX_HEAD_BYTES = 16 * 1024
RENDER_THREADS = 2
BIND_GRACE_SECONDS = 2.0      # no server and no lifespan after this: bind anyway (scripts, tests)
AFTER_STARTUP_SECONDS = 5.0   # the lifespan started the app, yet no server listens: bind anyway


# -- the server ------------------------------------------------------------------------------------
class _Connection:
    __slots__ = ("started", "has_head", "writer", "sock")

    def __init__(self, sock: socket.socket):
        self.started = time.monotonic()
        self.has_head = False
        self.writer: asyncio.StreamWriter | None = None
        self.sock = sock

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        else:
            self.sock.close()


class MetricsServer:
    """The listening socket and the loop thread that serves it (:meth:`shutdown` stops both)."""

    def __init__(self, host: str, port: int, prefix: str, token: str | None, *,
                 reuse_port: bool = False, listener: socket.socket | None = None):
        self.prefix = prefix
        self.token = token
        self.socket = listener if listener is not None else _listen(host, port, reuse_port)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._loop = asyncio.new_event_loop()
        self._render = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="mystocks-otel-render")
        self._connections: dict[asyncio.Task, _Connection] = {}
        self._freed = asyncio.Event()
        self._accepting: asyncio.Task | None = None
        self._accept_error_logged = False
        self._thread = threading.Thread(target=self._run, name="mystocks-otel-metrics-port", daemon=True)
        self._thread.start()

    # -- the loop thread
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._accepting = self._loop.create_task(self._accept_forever())
        try:
            self._loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:  # let them close their connections before the loop goes
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if len(self._connections) >= MAX_CONNECTIONS and not await self._make_room():
                continue
            try:
                client, _ = await loop.sock_accept(self.socket)
            except OSError as error:  # EMFILE, ENFILE, ENOBUFS: the process is short; wait
                if not self._accept_error_logged:
                    self._accept_error_logged = True
                    _log.warning("mystocks-otel: the metrics port cannot accept: %s", error)
                await asyncio.sleep(0.1)
                continue
            connection = _Connection(client)
            task = loop.create_task(self._serve(client, connection))
            self._connections[task] = connection
            task.add_done_callback(self._done)
            await asyncio.sleep(0)  # let the new connection read what it was sent

    async def _make_room(self) -> bool:
        """All connections are open: close the oldest one still without its head once a new one
        waits; True when there is room now."""
        now = time.monotonic()
        victim = next((task for task, c in self._connections.items()
                       if not c.has_head and now - c.started >= EVICT_AFTER_SECONDS), None)
        if victim is None:
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
            return len(self._connections) < MAX_CONNECTIONS
        if not await self._pending(0.05):
            return False
        connection = self._connections.pop(victim, None)
        if connection is not None:  # (it may have ended meanwhile)
            connection.abort()  # its descriptor is closed now; its task ends on its own
        return True

    async def _pending(self, timeout: float) -> bool:
        """Whether a new connection waits in the listen queue (within ``timeout``)."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self.socket.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(True))
        try:
            await asyncio.wait_for(ready, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    def _done(self, task: asyncio.Task) -> None:
        self._connections.pop(task, None)
        self._freed.set()

    async def _serve(self, client: socket.socket, connection: _Connection) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=client, limit=MAX_HEAD_BYTES)
            connection.writer = writer
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_SECONDS)
            except asyncio.LimitOverrunError:
                reply, method = endpoints.Reply(431, b"request header fields too large\n"), "GET"
            except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                return  # hung up, or too slow: closed without an answer
            else:
                connection.has_head = True
                reply, method = await asyncio.get_running_loop().run_in_executor(
                    self._render, self._answer, head)
            writer.write(_response(reply, method))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_SECONDS)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.CancelledError):
            pass  # a client that hangs up, reads too slowly, or was evicted is not an error
        except Exception:  # noqa: BLE001 - said, never raised into the loop
            _log.warning("mystocks-otel: the metrics port failed on a request", exc_info=True)
        finally:
            if writer is not None:
                writer.transport.abort()  # no lingering close: the descriptor is freed now
            else:
                client.close()

    def _answer(self, head: bytes) -> tuple[endpoints.Reply, str]:
        """The reply to one request head (on a render thread)."""
        line, _, rest = head.partition(b"\r\n")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
            return endpoints.Reply(400, b"bad request\n"), "GET"
        method, target = parts[0].decode("ascii"), parts[1].decode("latin-1")
        try:
            headers = http.client.parse_headers(io.BytesIO(rest))
        except http.client.HTTPException:  # more than 100 header lines
            return endpoints.Reply(431, b"request header fields too large\n"), method
        suffix = endpoints.suffix_of(urlsplit(target).path, self.prefix)
        if suffix is None:
            return endpoints.Reply(404, b"not found\n"), method
        try:
            return endpoints.answer(suffix, method=method, authorization=headers.get("Authorization"),
                                    accept=headers.get("Accept"), token=self.token), method
        except Exception:  # noqa: BLE001 - a failed render is the server's error, said once per request
            _log.exception("mystocks-otel: the standalone metrics port failed to answer")
            return endpoints.Reply(500, b"internal error\n"), method

    # -- from other threads
    def stop_accepting(self, drain_seconds: float) -> None:
        """Close the listening socket now (the other workers of the SO_REUSEPORT group take the
        new connections), then let the answers under way finish, for at most ``drain_seconds``."""
        if self._loop.is_closed():
            return

        def close_listener() -> None:
            if self._accepting is not None:
                self._accepting.cancel()
            self.socket.close()

        try:
            self._loop.call_soon_threadsafe(close_listener)
        except RuntimeError:
            return
        deadline = time.monotonic() + drain_seconds
        while self._connections and time.monotonic() < deadline:
            time.sleep(0.01)

    def shutdown(self) -> None:
        """Stop serving (bounded): open connections are closed, the thread ends."""
        if self._loop.is_closed():
            return

        def stop() -> None:
            for task in list(self._connections):
                task.cancel()
            if self._accepting is not None:
                self._accepting.cancel()
            self._loop.stop()

        try:
            self._loop.call_soon_threadsafe(stop)
        except RuntimeError:  # already closed
            pass
        self._thread.join(5.0)
        self._render.shutdown(wait=False)

    def server_close(self) -> None:
        self.socket.close()


def _response(reply: endpoints.Reply, method: str) -> bytes:
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {reply.status} {reason}", "Server: mystocks-otel",
             f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}",
             "Connection: close", *(f"{name}: {value}" for name, value in reply.headers)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if method == "HEAD" else head + reply.body


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family of ``host`` (``localhost`` may be IPv4 or IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = _family(host, port)
    address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# -- when and whether to bind ----------------------------------------------------------------------
def listening_ports() -> set[int]:
    """The TCP ports this process listens on (its app server's, once bound)."""
    import psutil

    try:
        connections = psutil.Process().net_connections("inet")
    except (psutil.Error, OSError):
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}


class MetricsPort:
    """The process's standalone port: bound by :meth:`bind` once the app's server listens.

    Lives in the process state's ``metrics_server`` slot from set-up on; :attr:`server` is the
    :class:`MetricsServer` once bound (None before, or when the port could not be had).
    """

    def __init__(self, host: str, port: int, prefix: str, token: str | None, *, reuse_port: bool = False,
                 run: tuple[int, str] | None = None):
        self.host, self.port, self.prefix, self.token = host, port, prefix, token
        self.reuse_port = reuse_port
        self.run = run  # (master pid, master start time): workers share one socket (port_keeper)
        self.server: MetricsServer | None = None
        self.outcome: str | None = None  # "serving", or why not
        self.bound = threading.Event()  # set once decided, bound or not
        self._created = time.monotonic()
        self._lifespan_started: float | None = None
        self._lifespan_ready: float | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def server_address(self):
        return self.server.server_address if self.server is not None else None

    # the app's lifespan tells when its server is about to listen (uvicorn binds after start-up)
    def lifespan_starting(self) -> None:
        if self._lifespan_started is None:
            self._lifespan_started = time.monotonic()

    def lifespan_ready(self) -> None:
        if self._lifespan_ready is None:
            self._lifespan_ready = time.monotonic()

    def start(self) -> "MetricsPort":
        if listening_ports():  # a server that bound before loading the app: its workers
            self.bind()
        else:
            threading.Thread(target=self._bind_when_listening, name="mystocks-otel-metrics-bind",
                             daemon=True).start()
        return self

    def _bind_when_listening(self) -> None:
        while not self._closed:
            now = time.monotonic()
            if listening_ports():
                break
            if self._lifespan_ready is not None:
                if now - self._lifespan_ready > AFTER_STARTUP_SECONDS:
                    break
            elif self._lifespan_started is None and now - self._created > BIND_GRACE_SECONDS:
                break  # no server, no lifespan: a script or a test client
            time.sleep(0.02)
        self.bind()

    def bind(self) -> None:
        """Bind now, unless this process already listens on the port (the app's): one line then."""
        with self._lock:
            if self._closed or self.bound.is_set():
                return
            try:
                if self.port in listening_ports():
                    self.outcome = (f"mystocks-otel: {VARIABLE}={self.port} is the app's own port (this "
                                    f"process's server listens on it); the app keeps it, and the "
                                    f"standalone metrics port is not served (choose another port)")
                    _log.warning(self.outcome)
                    return
                try:
                    listener = None
                    if self.run is not None and self.run[0] != os.getpid():
                        from . import port_keeper

                        listener = port_keeper.shared_listener(
                            *self.run, self.port, lambda: _listen(self.host, self.port, False))
                    self.server = MetricsServer(self.host, self.port, self.prefix, self.token,
                                                reuse_port=self.reuse_port, listener=listener)
                except OSError as error:
                    in_use = error.errno == errno.EADDRINUSE
                    self.outcome = (f"mystocks-otel: {VARIABLE}={self.port}: cannot bind "
                                    f"{self.host}:{self.port} ("
                                    + ("in use by another process" if in_use else str(error))
                                    + "); the app runs without the standalone metrics port")
                    _log.warning(self.outcome)
                    return
                self.outcome = "serving"
                _log.info("mystocks-otel: serving %s on %s:%s%s", self.prefix, self.host,
                          self.server.server_address[1],
                          " (one socket for every worker of the run)" if self.run else "")
            finally:
                self.bound.set()

    def release(self, drain_seconds: float = 1.0) -> None:
        """The worker is stopping: with SO_REUSEPORT, hand new connections to the other workers
        at once and finish the answers under way (a connection left in a closed socket's
        queue is reset by the kernel, so the earlier the better)."""
        server = self.server
        if server is not None and (self.reuse_port or self.run is not None):
            server.stop_accepting(drain_seconds)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def server_close(self) -> None:  # the old MetricsServer interface: shutdown() did it all
        pass


def serve(host: str, port: int, prefix: str = endpoints.DEFAULT_PATH, token: str | None = None, *,
          reuse_port: bool = False, run: tuple[int, str] | None = None,
          wait_for_app: bool = True) -> MetricsPort:
    """The process's standalone port (once per process): bound now when the app's server already
    listens (workers), else once it does (``wait_for_app``; :class:`MetricsPort`)."""

    def start() -> MetricsPort:
        handle = MetricsPort(host, port, prefix, token, reuse_port=reuse_port, run=run)
        if wait_for_app:
            return handle.start()
        handle.bind()
        return handle

    return state.start_metrics_server(start)[0]


def lifespan_starting() -> None:
    current = state.metrics_server()
    if current is not None:
        current.lifespan_starting()


def lifespan_ready() -> None:
    current = state.metrics_server()
    if current is not None:
        current.lifespan_ready()


def lifespan_ended() -> None:
    """The app stopped (a worker ends): see :meth:`MetricsPort.release`."""
    current = state.metrics_server()
    if current is not None:
        current.release()


def stop() -> None:
    """Close the port (bounded)."""
    handle = state.take_metrics_server()
    if handle is not None:
        handle.shutdown()
