"""Quotes: REST lookups (cache-aside through the cache) and the WebSocket quote feed."""

from __future__ import annotations

import json

import anyio

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from sqlalchemy import select

import mystocks_otel as otel

from ..db import quotes
from ..market import Subscriber
from .common import API, SYMBOL_PATTERN, Demo, Symbol

router = APIRouter(tags=["quotes"], **API)
ws_router = APIRouter(tags=["quotes"])
MAX_SUBSCRIPTIONS = 50
READER_GRACE_SECONDS = 5.0


def _row(row) -> dict:
    return {"symbol": row.symbol, "name": row.name, "price": row.price, "change": row.change,
            "volume": row.volume, "updated_at": row.updated_at}


@router.get("/quotes")
def list_quotes(demo: Demo) -> dict:
    with demo.database.connect() as conn:
        rows = conn.execute(select(quotes).order_by(quotes.c.symbol).limit(100)).all()
    return {"quotes": [_row(r) for r in rows]}


@router.get("/quotes/{symbol}")
def get_quote(symbol: Symbol, demo: Demo) -> dict:
    symbol = symbol.upper()
    key = f"quote:{symbol}"
    cached = demo.cache.get(key)
    if cached is not None:
        otel.record_cache_event("hit", cache=demo.cache.name)
        return {**json.loads(cached), "cached": True}
    otel.record_cache_event("miss", cache=demo.cache.name)
    with demo.database.connect() as conn:
        row = conn.execute(select(quotes).where(quotes.c.symbol == symbol)).first()
    if row is None:
        # Not cached: unknown symbols must not fill the cache.
        raise HTTPException(404, f"unknown symbol {symbol}")
    quote = _row(row)
    demo.cache.set(key, json.dumps(quote), demo.settings.quote_ttl_seconds)
    return {**quote, "cached": False}


# -- WebSocket feed ------------------------------------------------------------------------


def _subscription(message: object, known: frozenset[str]) -> tuple[set[str] | None, str | None]:
    """Parse ``{"subscribe": [...]}``; return (symbols, error)."""
    if not isinstance(message, dict) or not isinstance(message.get("subscribe"), list):
        return None, 'expected {"subscribe": ["AAPL", ...]}'
    wanted = message["subscribe"]
    if len(wanted) > MAX_SUBSCRIPTIONS or not all(isinstance(s, str) for s in wanted):
        return None, f"subscribe takes at most {MAX_SUBSCRIPTIONS} symbols, as strings"
    return {s.upper() for s in wanted}, None


async def _read(websocket: WebSocket, sub: Subscriber, known: frozenset[str]) -> None:
    """Client -> server. Replies go through the subscriber's queue: only the writer sends."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            # The binary ping of the protocol: answered with a binary pong.
            if message["bytes"] == b"ping":
                sub.offer("bytes", b"pong")
            else:
                sub.offer("text", json.dumps({"type": "error", "detail": "binary frames: only b'ping'"}))
            continue
        try:
            symbols, error = _subscription(json.loads(message.get("text") or ""), known)
        except ValueError:
            symbols, error = None, "messages must be JSON"
        if error:
            sub.offer("text", json.dumps({"type": "error", "detail": error}))
            continue
        sub.symbols = symbols & known
        sub.offer("text", json.dumps({"type": "subscribed", "symbols": sorted(sub.symbols),
                                      "unknown": sorted(symbols - known)[:MAX_SUBSCRIPTIONS]}))


async def _write(websocket: WebSocket, sub: Subscriber, scope: anyio.CancelScope) -> None:
    try:
        while True:
            kind, payload = await sub.queue.get()
            if kind == "bytes":
                await websocket.send_bytes(payload)
            else:
                await websocket.send_text(payload)
    except (WebSocketDisconnect, RuntimeError, OSError):
        # The client is gone. Let the reader take the disconnect message (its close code tells
        # a clean close from a dropped connection); cancel it only if that never comes.
        await anyio.sleep(READER_GRACE_SECONDS)
    scope.cancel()


@ws_router.websocket("/ws/quotes")
async def quote_feed(websocket: WebSocket) -> None:
    hub = websocket.app.state.demo.hub
    await websocket.accept()
    sub = hub.subscribe()
    sub.offer("text", json.dumps({"type": "welcome", "symbols": sorted(hub.symbols),
                                  "hint": 'send {"subscribe": ["AAPL"]} to narrow the feed'}))
    try:
        # anyio, not bare asyncio tasks: the server's (or TestClient's) cancel scope then ends
        # both halves cleanly, and the first half to finish cancels the other.
        async with anyio.create_task_group() as group:
            group.start_soon(_write, websocket, sub, group.cancel_scope)
            await _read(websocket, sub, hub.symbols)
            group.cancel_scope.cancel()
    finally:
        hub.unsubscribe(sub)


__all__ = ["router", "ws_router", "SYMBOL_PATTERN"]
