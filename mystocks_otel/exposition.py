"""The ``/metrics`` body: Prometheus text (or OpenMetrics when asked for), and its cost.

One function, :func:`render`, is what every door to ``/metrics`` calls (the app's port
and the standalone port). It returns ``None`` when the Prometheus reader is off.
"""

from __future__ import annotations

import time

from . import provider


def render(accept: str | None = None) -> tuple[bytes, str] | None:
    """``(body, content_type)`` for a scrape whose ``Accept`` header is ``accept``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    state = provider.current()
    if state is None or state.registry is None:
        return None
    started = time.perf_counter()
    body = generate_latest(state.registry)
    state.last_collection = {
        "at": time.time(),
        "duration_seconds": round(time.perf_counter() - started, 6),
        "bytes": len(body),
    }
    return body, CONTENT_TYPE_LATEST
