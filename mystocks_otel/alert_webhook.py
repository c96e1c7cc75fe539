"""``POST /alerts/webhook``: Alertmanager notifications -> the alert-lifecycle metrics.

Alertmanager's ``webhook`` receiver (alerts/alertmanager) posts every notification here, as
webhook JSON version 4. A notification repeats the alerts of its group, so counting alerts
per notification would count one incident many times: :class:`AlertTracker` remembers the
firing alerts by fingerprint and turns notifications into lifecycle events:

* a fingerprint seen firing for the first time -> ``mystocks_alert_fired_total``;
* a tracked fingerprint seen resolved -> ``mystocks_alert_resolved_total`` and its
  firing-to-resolved time in ``mystocks_alert_resolution_duration_seconds``;
* after every payload, ``mystocks_alert_active`` per severity = tracked firing alerts.

The state is bounded: past ``max_tracked``, the least important alerts go first (other and info,
then warning, critical last; the least recently notified first within a severity), so a flood of
minor alerts never pushes a firing critical out. It forgets alerts not re-notified
for ``stale_after_seconds`` (a lost "resolved" must not leave an alert active forever:
Alertmanager re-sends firing alerts every repeat_interval, at most 4h on the webhook routes).
It is per process: under several workers, run the webhook in one of them.

**Locked and bounded.** :func:`alert_webhook_router` refuses to build without a token unless
told ``allow_unauthenticated=True``. The body is capped at :data:`MAX_BODY_BYTES` (413, checked
from ``Content-Length`` and again while streaming, only after the token matched), and decoding,
validation and bookkeeping run on a worker thread, so the event loop is never blocked by a large
payload.

FastAPI is the host app's dependency, so it is imported inside :func:`alert_webhook_router`.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` class on the
# handler, which is imported inside alert_webhook_router (string annotations would make
# it look like a query parameter).
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from ._internal.auth import authorization, bearer_matches, challenge
from ._internal.recorders import record_alert_notification, set_active_alerts

_log = logging.getLogger(__name__)

#: The severities reported as their own series; anything else is counted as "other".
SEVERITIES = ("critical", "warning", "info")
OTHER = "other"
DEFAULT_MAX_TRACKED = 10_000
DEFAULT_STALE_AFTER_SECONDS = 8 * 3600.0  # > 2 x the longest webhook repeat_interval (4h)
MAX_BODY_BYTES = 1024 * 1024  # ~3,000 alerts in one notification; set max_alerts on the receiver
#: Eviction order past max_tracked: the first severities go first.
EVICTION_ORDER = (OTHER, "info", "warning", "critical")

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.I)


class WebhookPayloadError(ValueError):
    """The payload is not Alertmanager webhook JSON v4; ``str()`` says what is wrong."""


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    status: str  # firing | resolved
    severity: str
    category: str
    starts_at: datetime | None
    ends_at: datetime | None


def _timestamp(value: Any, where: str) -> datetime | None:
    if not isinstance(value, str):
        raise WebhookPayloadError(f"{where} must be an RFC 3339 string")
    match = _RFC3339.fullmatch(value)
    if not match:
        raise WebhookPayloadError(f"{where}={value[:40]!r} is not an RFC 3339 timestamp")
    base, fraction, zone = match.groups()
    # Go sends nanoseconds; Python's datetime keeps microseconds (and 3.10 rejects "Z").
    text = base + (f".{fraction[:6]:0<6}" if fraction else "") + ("+00:00" if zone in "Zz" else zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookPayloadError(f"{where}={value[:40]!r} is not a valid date") from None
    return None if parsed.year <= 1 else parsed  # Go's zero time: "not set"


def parse_payload(payload: Any) -> list[Alert]:
    """Validate a decoded webhook body and return its alerts."""
    if not isinstance(payload, dict):
        raise WebhookPayloadError("body must be a JSON object (Alertmanager webhook payload)")
    if payload.get("version") != "4":
        raise WebhookPayloadError(
            f"unsupported version {payload.get('version')!r}: expected \"4\" (Alertmanager webhook)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookPayloadError("alerts must be a list")
    parsed = []
    for i, item in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise WebhookPayloadError(f"{where} must be an object")
        status, labels, fingerprint = item.get("status"), item.get("labels"), item.get("fingerprint")
        if status not in ("firing", "resolved"):
            raise WebhookPayloadError(f"{where}.status must be \"firing\" or \"resolved\", got {status!r}")
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise WebhookPayloadError(f"{where}.labels must be an object of strings")
        if not isinstance(fingerprint, str) or not fingerprint or len(fingerprint) > 128:
            raise WebhookPayloadError(f"{where}.fingerprint must be a non-empty string")
        severity = labels.get("severity", "")
        parsed.append(Alert(
            fingerprint=fingerprint,
            status=status,
            severity=severity if severity in SEVERITIES else OTHER,
            category=labels.get("category", OTHER),  # the recorder bounds it to the catalog's set
            starts_at=_timestamp(item.get("startsAt"), f"{where}.startsAt"),
            ends_at=_timestamp(item.get("endsAt"), f"{where}.endsAt") if "endsAt" in item else None,
        ))
    return parsed


@dataclass
class _Tracked:
    alert: Alert
    last_seen: float


class AlertTracker:
    """Fingerprints of the alerts firing now; turns notifications into lifecycle metrics."""

    def __init__(self, max_tracked: int = DEFAULT_MAX_TRACKED,
                 stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.max_tracked = max_tracked
        self.stale_after_seconds = stale_after_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._firing: "OrderedDict[str, _Tracked]" = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._firing)

    def apply(self, alerts: list[Alert]) -> dict:
        """Record one notification's alerts; returns what happened (for the response)."""
        fired = resolved = 0
        # One lock around state AND recorders: two concurrent payloads must not publish
        # their active counts in the wrong order.
        with self._lock:
            now = self._clock()
            for alert in alerts:
                tracked = self._firing.get(alert.fingerprint)
                if alert.status == "firing":
                    if tracked is None:
                        record_alert_notification("firing", alert.severity, alert.category)
                        fired += 1
                        self._firing[alert.fingerprint] = _Tracked(alert, now)
                    else:
                        tracked.last_seen = now
                        self._firing.move_to_end(alert.fingerprint)
                elif tracked is not None:  # resolved; untracked ones were counted before us
                    del self._firing[alert.fingerprint]
                    record_alert_notification("resolved", alert.severity, alert.category,
                                              duration_seconds=_duration(tracked.alert, alert))
                    resolved += 1
            dropped = self._forget(now)
            active = {severity: 0 for severity in (*SEVERITIES, OTHER)}
            for tracked in self._firing.values():
                active[tracked.alert.severity] += 1
            for severity, count in active.items():
                set_active_alerts(severity, count)
        if dropped:
            _log.warning("alert webhook: forgot %d alert(s) (stale or over the %d limit)",
                         dropped, self.max_tracked)
        return {"fired": fired, "resolved": resolved, "active": active}

    def _forget(self, now: float) -> int:
        dropped = 0
        while self._firing:  # stale first, whatever their severity (least recently seen first)
            oldest = next(iter(self._firing.values()))
            if now - oldest.last_seen <= self.stale_after_seconds:
                break
            self._firing.popitem(last=False)
            dropped += 1
        excess = len(self._firing) - self.max_tracked
        for severity in EVICTION_ORDER:  # then over the limit, least important first
            if excess <= 0:
                break
            victims = [fp for fp, tracked in self._firing.items() if tracked.alert.severity == severity]
            for fingerprint in victims[:excess]:
                del self._firing[fingerprint]
            dropped += min(excess, len(victims))
            excess -= len(victims)
        return dropped


def _duration(started: Alert, ended: Alert) -> float | None:
    start = ended.starts_at or started.starts_at
    if start is None or ended.ends_at is None:
        return None
    seconds = (ended.ends_at - start).total_seconds()
    return seconds if seconds >= 0 else None


def alert_webhook_router(token: str | None = None, *, allow_unauthenticated: bool = False,
                         tracker: AlertTracker | None = None, max_body_bytes: int = MAX_BODY_BYTES):
    """A router with ``POST /alerts/webhook`` (not in the OpenAPI schema).

    ``token``: requests need ``Authorization: Bearer <token>`` (Alertmanager sends it from
    ``credentials_file``, see alerts/alertmanager/README.md). Without one, the router is not
    built (ValueError) unless ``allow_unauthenticated=True`` says the webhook may be open to
    anyone who can reach the app. Bodies over ``max_body_bytes`` get a 413.
    """
    if not token and not allow_unauthenticated:
        raise ValueError("alert_webhook_router: no token, so anyone who reaches the app could post "
                         "alerts; pass token=... (Alertmanager's credentials_file) or "
                         "allow_unauthenticated=True")
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    router = APIRouter(include_in_schema=False)
    state = tracker if tracker is not None else AlertTracker()

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    def handle(body: bytes):
        """Decode, validate and apply (on a worker thread: never on the event loop)."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
            return error(400, "body is not valid JSON")
        try:
            alerts = parse_payload(payload)
        except WebhookPayloadError as exc:
            return error(422, str(exc))
        return {"status": "ok", **state.apply(alerts)}

    too_large = f"body larger than {max_body_bytes} bytes"

    @router.post("/alerts/webhook")
    async def alerts_webhook(request: Request):
        if not bearer_matches(authorization(request.scope), token):
            return error(401, "missing or wrong bearer token",
                         **{"WWW-Authenticate": challenge("alerts")})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return error(413, too_large)
        return await run_in_threadpool(handle, bytes(body))

    router.alert_tracker = state  # for the host app's introspection and tests
    return router
