"""The demo's own settings, read from the environment when an app is built (never at import)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The demo names itself (mystocks-otel leaves the default to OpenTelemetry's convention);
# OTEL_SERVICE_NAME still wins. Prometheus' job and the alerts use the same name.
SERVICE_NAME = "mystocks-api"
# A temp path, not ./: running the demo from a checkout must not litter the working tree.
DEFAULT_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'mystocks-demo.db'}"


@dataclass(frozen=True)
class DemoSettings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    # Every key the demo writes starts with this, so a cache flush can stay inside the demo's keys
    # even when REDIS_URL points at a database other programs share.
    key_prefix: str = "mystocks:demo:"
    quote_ttl_seconds: int = 5
    session_ttl_seconds: int = 86_400
    memory_cache_size: int = 10_000
    tick_seconds: float = 0.5
    health_seconds: float = 5.0
    redis_connect_timeout: float = 0.5
    redis_socket_timeout: float = 2.0
    # Bearer token Alertmanager must send to /alerts/webhook; None accepts any caller (a demo).
    alert_webhook_token: str | None = None
    # Bearer token /admin/faults requires; None leaves the switches open (tests, a lone demo).
    admin_token: str | None = None
    # A JSON file shared by every worker for the fault switches (None: this process's memory).
    faults_file: str | None = None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={raw!r} is invalid: expected a positive number")
    return value


def load(environ: Mapping[str, str] | None = None) -> DemoSettings:
    env = os.environ if environ is None else environ
    return DemoSettings(
        database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
        tick_seconds=_positive(env, "MYSTOCKS_DEMO_TICK_SECONDS", 0.5),
        health_seconds=_positive(env, "MYSTOCKS_DEMO_HEALTH_SECONDS", 5.0),
        quote_ttl_seconds=int(_positive(env, "MYSTOCKS_DEMO_QUOTE_TTL", 5)),
        memory_cache_size=int(_positive(env, "MYSTOCKS_DEMO_MEMORY_CACHE_SIZE", 10_000)),
        alert_webhook_token=env.get("MYSTOCKS_DEMO_ALERT_WEBHOOK_TOKEN") or None,
        faults_file=env.get("MYSTOCKS_DEMO_FAULTS_FILE") or None,
        admin_token=env.get("MYSTOCKS_DEMO_ADMIN_TOKEN") or None,
    )
