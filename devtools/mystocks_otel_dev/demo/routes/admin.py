"""Operations routes: ``/health`` and the fault switches at ``/admin/faults``."""

from __future__ import annotations

import asyncio
import hmac
import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import mystocks_otel as otel

from ..faults import DependencyDown, FaultValidationError
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


@router.post("/admin/faults", dependencies=[Depends(admin_only)])
async def set_faults(request: Request, demo: Demo) -> dict:
    """Set any of the switches (unlisted ones keep their value) and run one-shot actions.

    Body example: ``{"latency_ms": 200, "error_rate": 0.1, "dependency_down": "redis",
    "cache_flush": true}``. The whole body is validated before anything changes.
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
