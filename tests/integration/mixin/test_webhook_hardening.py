"""Issue 13, row 6: the Alertmanager webhook is locked by default, bounded, and never blocks the loop.

Before: ``alert_webhook_router()`` without a token was open to anyone, the body cap was 10 MB,
a valid 9 MB payload was parsed on the event loop (2 s blocked) and pushed every tracked
critical alert out of the tracker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mystocks_otel.alert_webhook import MAX_BODY_BYTES, AlertTracker, alert_webhook_router, parse_payload
from test_alert_webhook import am_alert, payload

TOKEN = "token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_building_without_a_token_is_refused_with_one_line():
    with pytest.raises(ValueError) as info:
        alert_webhook_router()
    message = str(info.value)
    assert "\n" not in message and "token" in message and "allow_unauthenticated=True" in message
    with pytest.raises(ValueError):
        alert_webhook_router(token="")


def test_an_explicit_choice_leaves_it_open():
    app = FastAPI()
    app.include_router(alert_webhook_router(allow_unauthenticated=True))
    assert TestClient(app).post("/alerts/webhook", json=payload(am_alert("a"))).json()["fired"] == 1


def client() -> TestClient:
    app = FastAPI()
    app.include_router(alert_webhook_router(token=TOKEN))
    return TestClient(app)


def test_the_body_cap_is_one_mebibyte():
    assert MAX_BODY_BYTES == 1024 * 1024
    big = b" " * (MAX_BODY_BYTES + 1)
    response = client().post("/alerts/webhook", content=big, headers=AUTH)
    assert response.status_code == 413

    def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(40):
            yield b" " * 65536

    response = client().post("/alerts/webhook", content=chunks(), headers=AUTH)
    assert response.status_code == 413


def test_an_unauthenticated_body_is_never_read():
    response = client().post("/alerts/webhook", content=b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 401


def large_valid_body(target: int) -> bytes:
    alerts, size = [], 200
    while size < target - 400:
        alert = am_alert(f"fp-{len(alerts)}", severity="info")
        alerts.append(alert)
        size += len(json.dumps(alert))
    return json.dumps(payload(*alerts)).encode()


#: The loop's worst lag allowed. The regression this pins blocked the loop for 2 s; a loaded
#: 2-core machine alone can delay a 5 ms tick by 100 ms, so the bound sits between the two.
#: Where the work runs is asserted exactly below (the tracker's thread), not by the clock.
MAX_LAG = 0.5


class ThreadRecordingTracker(AlertTracker):
    """A real tracker that also notes which thread applied each batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads: list[int] = []

    def apply(self, alerts):
        self.threads.append(threading.get_ident())
        return super().apply(alerts)


@pytest.mark.parametrize("size, expected", [(9_000_000, 413), (1_000_000, 200)])
def test_a_large_valid_payload_never_blocks_the_event_loop(size, expected):
    """9 MB (valid, the size that blocked the loop for 2 s): refused while streaming. Just under
    the cap: parsed and applied off the loop, on another thread."""
    app = FastAPI()
    tracker = ThreadRecordingTracker(max_tracked=100_000)
    app.include_router(alert_webhook_router(token=TOKEN, tracker=tracker))
    body = large_valid_body(size)
    assert (len(body) < MAX_BODY_BYTES) == (expected == 200)

    async def run() -> tuple[float, int, dict, int]:
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker():
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - before - 0.005)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/alerts/webhook", content=body, headers=AUTH)
        done.set()
        await tick
        return max(lags), response.status_code, response.json(), threading.get_ident()

    worst, status, result, loop_thread = asyncio.run(run())
    assert status == expected, (status, str(result)[:200])
    if expected == 200:
        assert result["fired"] > 1000, result
        assert tracker.threads and loop_thread not in tracker.threads, "applied on the event loop's thread"
    else:
        assert tracker.threads == [], "a refused body was applied"
    assert worst < MAX_LAG, f"the event loop was blocked for {worst * 1000:.0f} ms"


def test_eviction_keeps_firing_criticals():
    tracker = AlertTracker(max_tracked=5)
    tracker.apply(parse_payload(payload(*(am_alert(f"crit-{i}", severity="critical") for i in range(3)))))
    flood = [am_alert(f"info-{i}", severity="info") for i in range(50)]
    flood += [am_alert(f"warn-{i}", severity="warning") for i in range(50)]
    result = tracker.apply(parse_payload(payload(*flood)))
    assert len(tracker) == 5
    assert result["active"]["critical"] == 3, result["active"]  # no critical alert was pushed out
    assert result["active"]["warning"] == 2 and result["active"]["info"] == 0, result["active"]
