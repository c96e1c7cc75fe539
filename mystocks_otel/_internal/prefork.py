"""Periodic OTLP export that survives ``fork()``: gunicorn ``--preload`` builds the provider
in the arbiter, then forks the workers.

The SDK (1.45) already restarts the export thread in a forked child, and gives the child its
own ``service.instance.id`` (``MeterProvider._handle_fork``). Two things it leaves broken:

- **Locks held at the fork.** A fork that lands while the parent's export thread collects or
  exports copies every lock that thread holds into the child, still held; the child's new
  export thread then waits on them forever and the worker never pushes (seen under gunicorn
  ``--preload -w 3``: one worker in three stuck on the reader's ``_export_lock``). So a fork
  waits, bounded, until the reader is between collections (:class:`ForkSafeExport`). When a
  slow Collector outlasts the wait, the fork goes ahead: the collection (milliseconds) is
  long over and the thread is sending, holding only the reader's export lock, which the
  child makes anew.
- **The Collector connection.** The child inherits the parent's keep-alive socket; two
  processes writing requests into one socket corrupt each other's exports. The child gets a
  new HTTP session.

What the child counts starts at zero: the process state's fork hook clears the counts it
inherited (:mod:`mystocks_otel._internal.state`), and the parent keeps pushing its own under
its own id. The wait around the fork goes through that one hook too (:func:`state.join_fork`).
"""

from __future__ import annotations

import logging
import threading

from . import state

_log = logging.getLogger(__name__)

FORK_WAIT_SECONDS = 2.0  # a hung Collector must not hang the server's fork for longer


class ForkSafeExport:
    """Mix into ``PeriodicExportingMetricReader`` (before it in the bases)."""

    def __init__(self, *args, **kwargs):
        self._busy = threading.Lock()  # held while collecting and exporting
        self._paused = False
        super().__init__(*args, **kwargs)  # starts the export thread
        state.join_fork(self)  # before_fork / after_fork_in_parent, held weakly

    def collect(self, timeout_millis: float = 10_000) -> None:
        with self._busy:
            super().collect(timeout_millis=timeout_millis)

    def before_fork(self) -> None:
        self._paused = self._busy.acquire(timeout=FORK_WAIT_SECONDS)
        if not self._paused:
            _log.warning("mystocks-otel: fork() while an OTLP export still runs after %ss",
                         FORK_WAIT_SECONDS)

    def after_fork_in_parent(self) -> None:
        if self._paused:
            self._paused = False
            self._busy.release()

    def _at_fork_reinit(self) -> None:
        """In the child (the SDK calls this): fresh locks and connection, then a new thread."""
        self._busy, self._paused = threading.Lock(), False
        self._export_lock = threading.Lock()  # in case the bounded wait above gave up
        new_session(self._exporter)
        super()._at_fork_reinit()


def new_session(exporter) -> bool:
    """Give an OTLP/HTTP exporter (or a wrapper of one, through ``.inner``) a new
    ``requests`` session with the same settings, leaving the inherited one untouched."""
    try:
        while hasattr(exporter, "inner"):
            exporter = exporter.inner
        transport = exporter._client._transport  # SDK internals: checked by tests on upgrade
        old = transport._session
        import requests

        session = requests.Session()
        for name in ("headers", "verify", "cert", "auth", "proxies", "trust_env"):
            setattr(session, name, getattr(old, name))
        transport._session = session
        return True
    except Exception:  # noqa: BLE001 - a new exporter layout: keep the inherited session
        _log.debug("mystocks-otel: could not renew the OTLP session after fork", exc_info=True)
        return False
