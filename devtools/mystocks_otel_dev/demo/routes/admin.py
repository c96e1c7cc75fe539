"""Operations routes: ``/health`` and the fault switches at ``/admin/faults``."""

from __future__ import annotations

import asyncio
import hmac
import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import mystocks_otel as otel

from ..faults import (ACTIONS, DEPENDENCIES, MAX_LATENCY_MS, MAX_SLOW_QUERY_SECONDS,
                      DependencyDown, FaultValidationError)
from .common import Demo

router = APIRouter(tags=["operations"])
_bearer = HTTPBearer(auto_error=False, description="MYSTOCKS_DEMO_ADMIN_TOKEN (the stack's secrets/demo-admin-token)")


def admin_only(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """The fault switches need ``Authorization: Bearer <MYSTOCKS_DEMO_ADMIN_TOKEN>`` when the
    token is set (the stack sets it: on a shared machine another local user must not break the
    demo or fake an incident); without it they are open, as in a test client."""
    token = request.app.state.demo.settings.admin_token
    if token is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(status_code=401, detail="the fault switches need the admin bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


@router.get("/health")
async def health(demo: Demo) -> dict:
    """A live probe (also fed to the health metrics). 200 even when degraded: read ``status``."""
    return await demo.health.check()


@router.get("/admin/faults", dependencies=[Depends(admin_only)])
def get_faults(demo: Demo) -> dict:
    return {"faults": demo.faults.state.as_dict()}


@router.delete("/admin/faults", dependencies=[Depends(admin_only)])
def reset_faults(demo: Demo) -> dict:
    return {"faults": demo.faults.reset().as_dict()}


def _send_bad_measurements() -> dict:
    """Garbage into the recorders (a buggy caller): each is dropped and counted, none raises."""
    otel.record_market_data("simulator", "quote", points=-1)  # negative counter increment
    otel.record_data_quality("quotes", completeness=float("nan"))  # NaN gauge
    otel.record_cache_event("flush")  # unknown event: a recorder error
    return {"sent": 3, "see": "mystocks_telemetry_dropped_measurements_total"}


async def _run_action(demo, action: str) -> object:
    if action == "bad_measurements":
        return _send_bad_measurements()
    # The other one-shot actions touch the network: run them off the event loop.
    if action == "cache_flush":
        return {"keys_removed": await asyncio.to_thread(demo.cache.flush)}
    if action == "cache_error":
        return await asyncio.to_thread(demo.cache.provoke_error)
    return await asyncio.to_thread(demo.database.provoke_error)  # db_error


#: The POST body's schema, shown in /docs (the handler reads the raw body: a bad one is a
#: one-line 422 from faults.py's own validation, never FastAPI's error list).
FAULTS_BODY = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "latency_ms": {"type": "integer", "minimum": 0, "maximum": MAX_LATENCY_MS,
                       "description": "added to every API request"},
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "share of API requests answered 500"},
        "slow_queries": {"type": "boolean", "description": "every DB query sleeps slow_query_seconds"},
        "slow_query_seconds": {"type": "number", "exclusiveMinimum": 0,
                               "maximum": MAX_SLOW_QUERY_SECONDS},
        "market_data_stall": {"type": "boolean", "description": "the quote simulator stops"},
        "dependency_down": {"enum": [*DEPENDENCIES, None],
                            "description": "that dependency answers as unreachable (503)"},
        "cache_errors": {"type": "boolean",
                         "description": "every cache read also sends a failing Redis command"},
        **{action: {"type": "boolean", "description": "one-shot action, run when true"}
           for action in ACTIONS},
    },
    "example": {"latency_ms": 200, "error_rate": 0.1, "dependency_down": "redis", "cache_flush": True},
}


@router.post("/admin/faults", dependencies=[Depends(admin_only)],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": FAULTS_BODY}}}})
async def set_faults(request: Request, demo: Demo) -> dict:
    """Set any of the switches (unlisted ones keep their value) and run one-shot actions.

    The body is a JSON object with any of these fields; the whole body is validated before
    anything changes (a bad one is a 422 naming the field), and the answer is the new state:

    - ``latency_ms``: 0-30000, added to every API request;
    - ``error_rate``: 0-1, the share of API requests answered 500;
    - ``slow_queries``: true/false, every DB query sleeps ``slow_query_seconds`` (above 0, at
      most 30; default 0.5);
    - ``market_data_stall``: true/false, the quote simulator stops (market-data alerts);
    - ``dependency_down``: ``"redis"``, ``"database"`` or null, that dependency answers as
      unreachable (503);
    - ``cache_errors``: true/false, every cache read also sends a failing Redis command;
    - one-shot actions, run when true: ``cache_flush``, ``db_error``, ``cache_error``,
      ``bad_measurements`` (three invalid recordings, dropped and counted).

    Example: ``{"latency_ms": 200, "error_rate": 0.1, "dependency_down": "redis",
    "cache_flush": true}``. ``DELETE /admin/faults`` resets every switch, ``GET`` shows them.
    With the admin token set (the stack sets it) each needs ``Authorization: Bearer <token>``.
    """
    try:
        payload = json.loads(await request.body() or b"null")
    except ValueError:
        raise HTTPException(400, "the body must be JSON, e.g. {\"latency_ms\": 200}") from None
    try:
        state, actions = demo.faults.update(payload)
    except FaultValidationError as exc:
        raise HTTPException(422, str(exc)) from None
    results = {}
    for action in actions:
        try:
            results[action] = await _run_action(demo, action)
        except DependencyDown as exc:
            results[action] = f"not run: {exc}"
    return {"faults": state.as_dict(), "actions": results}
