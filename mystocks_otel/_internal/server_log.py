"""Lines the operator must see: in the server's own log (uvicorn, gunicorn) when it has one.

Under ``opentelemetry-instrument`` the root logger may hold only OpenTelemetry's log handler
(logs auto-instrumentation), so a warning on our own logger reaches no terminal. The
server's error logger is configured before the app is imported: start-up lines and
one-time warnings go there, else to the caller's logger.
"""

from __future__ import annotations

import logging
import sys


def log(level: int, message: str, fallback: logging.Logger, *, exc_info=False) -> None:
    for server in ("gunicorn", "uvicorn"):
        server_log = logging.getLogger(f"{server}.error")
        if server in sys.modules and server_log.hasHandlers():
            server_log.log(level, message, exc_info=exc_info)
            return
    fallback.log(level, message, exc_info=exc_info)
