"""An app that feeds the recorders hostile input (run with MYSTOCKS_OTEL_CARDINALITY_LIMIT set)."""

import gc
import math

import psutil
from fastapi import FastAPI

import mystocks_otel

app = FastAPI()
mystocks_otel.setup_telemetry(app)
ROUND_SIZE = 20_000


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@app.get("/sym/{symbol}")
def symbol(symbol: str):
    return {"symbol": symbol}


@app.get("/users/{user_id}/portfolio")
def portfolio(user_id: str):
    return {"user": user_id}


@app.post("/hostile/{round_no}")
def hostile(round_no: int):
    """20,000 distinct bogus values into bounded and unbounded labels; returns RSS after."""
    for i in range(ROUND_SIZE):
        tag = f"{round_no}-{i}"
        mystocks_otel.record_order(f"side-{tag}", f"type-{tag}", f"status-{tag}")
        mystocks_otel.record_websocket_event("message", f"/bogus/{tag}")
        mystocks_otel.record_api_request("GET", f"/raw/{tag}", 200, 0.001)
    return {"rss": rss()}


GARBAGE = [
    ("order None labels", lambda: mystocks_otel.record_order(None, None, None)),
    ("latency string", lambda: mystocks_otel.record_order("buy", "limit", "filled", "abc")),
    ("latency NaN", lambda: mystocks_otel.record_order("buy", "limit", "filled", math.nan)),
    ("counter -1", lambda: mystocks_otel.record("mystocks.trading.orders", -1,
                                                {"side": "buy", "type": "limit", "status": "filled"})),
    ("counter NaN", lambda: mystocks_otel.record("mystocks.trading.orders", math.nan)),
    ("counter string", lambda: mystocks_otel.record("mystocks.trading.orders", "5")),
    ("counter None", lambda: mystocks_otel.record("mystocks.trading.orders", None)),
    ("unknown key", lambda: mystocks_otel.record("mystocks.trading.orders", 1, {"user_id": "42"})),
    ("unknown metric", lambda: mystocks_otel.record("no.such.metric", 1)),
    ("attributes not a dict", lambda: mystocks_otel.record("mystocks.trading.orders", 1, "x")),
    ("api None", lambda: mystocks_otel.record_api_request(None, None, "x", None)),
    ("gauge NaN", lambda: mystocks_otel.set_symbols_tracked("polygon", math.nan)),
    ("gauge string", lambda: mystocks_otel.set_symbols_tracked("polygon", "many")),
    ("ws bad event", lambda: mystocks_otel.record_websocket_event("bogus", "/ws")),
    ("db garbage", lambda: mystocks_otel.record_db_query(None, "slow")),
    ("session bad", lambda: mystocks_otel.record_session(object(), "middle")),
    ("quality bad", lambda: mystocks_otel.record_data_quality("d", completeness="full",
                                                               anomalies=-3)),
]


@app.post("/garbage")
def garbage():
    raised = {}
    for name, call in GARBAGE:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the point: report anything that escapes
            raised[name] = repr(exc)
    return {"raised": raised, "calls": len(GARBAGE)}


@app.get("/rss")
def current_rss():
    return {"rss": rss()}


@app.post("/infinite")
def infinite():
    """An infinite value must be dropped (and counted), not poison the series for good."""
    labels = {"side": "sell", "type": "stop", "status": "rejected"}
    mystocks_otel.record("mystocks.trading.orders", 1, labels)
    mystocks_otel.record("mystocks.trading.orders", math.inf, labels)
    mystocks_otel.record("mystocks.trading.orders", 1, labels)
    mystocks_otel.record_data_quality("prices", completeness=0.5)
    mystocks_otel.record_data_quality("prices", completeness=math.inf)
    mystocks_otel.record_order("sell", "stop", "rejected", latency_seconds=math.inf)
    return {}
