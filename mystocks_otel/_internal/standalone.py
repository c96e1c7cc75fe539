"""The standalone metrics port (``OTEL_EXPORTER_PROMETHEUS_PORT``): the same three endpoints,
the same token, on their own port.

A small ``http.server`` of ours rather than prometheus_client's ``start_http_server``, so
that this door answers exactly as the app's port does: the body comes from
:func:`mystocks_otel.endpoints.answer` (and through it ``exposition.render``), and
``/metrics`` demands ``MYSTOCKS_OTEL_METRICS_TOKEN`` when it is set. It binds
``OTEL_EXPORTER_PROMETHEUS_HOST``, ``localhost`` by default (the OpenTelemetry
specification's default), and serves on daemon threads.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .. import endpoints
from . import state

_log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server_version = "mystocks-otel"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        server: MetricsServer = self.server  # type: ignore[assignment]
        suffix = endpoints.suffix_of(urlsplit(self.path).path, server.prefix)
        if suffix is None:
            reply = endpoints.Reply(404, b"not found\n")
        else:
            try:
                reply = endpoints.answer(suffix, method=self.command,
                                         authorization=self.headers.get("Authorization"),
                                         accept=self.headers.get("Accept"), token=server.token)
            except Exception:  # noqa: BLE001 - a failed render is the server's error, said once
                _log.exception("mystocks-otel: the standalone metrics port failed to answer")
                reply = endpoints.Reply(500, b"internal error\n")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - no access log per scrape
        pass


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, prefix: str, token: str | None):
        self.prefix = prefix
        self.token = token
        self.address_family = _family(host, port)
        super().__init__((host, port), _Handler)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-answer is not an error; anything else is logged, never
        printed to stderr as socketserver does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        _log.warning("mystocks-otel: the metrics port failed on a request from %s",
                     client_address[0], exc_info=True)


def _family(host: str, port: int) -> socket.AddressFamily:
    """The address family of ``host`` (``localhost`` may be IPv4 or IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]


def serve(host: str, port: int, prefix: str = endpoints.DEFAULT_PATH,
          token: str | None = None) -> MetricsServer:
    """Start the port on a daemon thread (once per process); raises OSError if it is taken."""

    def start() -> MetricsServer:
        server = MetricsServer(host, port, prefix, token)
        threading.Thread(target=server.serve_forever, name="mystocks-otel-metrics-port",
                         daemon=True).start()
        _log.info("mystocks-otel: serving %s on %s:%s", prefix, host, server.server_address[1])
        return server

    return state.start_metrics_server(start)[0]


def stop() -> None:
    """Close the port (bounded: the serving threads are daemons)."""
    server = state.take_metrics_server()
    if server is not None:
        server.shutdown()
        server.server_close()
