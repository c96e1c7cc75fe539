"""Watchlists (database) and sign-in sessions (cache)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, insert, select

import mystocks_otel as otel

from ..db import quotes, watchlist
from .common import API, SYMBOL_PATTERN, USER_PATTERN, Demo, UserId

router = APIRouter(tags=["users"], **API)
MAX_WATCHLIST = 100
#: The password the demo treats as wrong, so failed logins can be produced on purpose.
WRONG_PASSWORD = "wrong"


class WatchIn(BaseModel):
    symbol: str = Field(pattern=SYMBOL_PATTERN)


class LoginIn(BaseModel):
    user_id: str = Field(pattern=USER_PATTERN)
    password: str = Field(max_length=128)
    # Any string up to 32 characters: the recorder maps values outside the platform set to "other".
    platform: str = Field(default="web", max_length=32)


@router.get("/watchlist/{user_id}")
def get_watchlist(user_id: UserId, demo: Demo) -> dict:
    with demo.database.connect() as conn:
        symbols = list(conn.scalars(select(watchlist.c.symbol).where(watchlist.c.user_id == user_id)
                                    .order_by(watchlist.c.symbol)))
    otel.record_watchlist_operation("view")
    return {"user_id": user_id, "symbols": symbols}


@router.post("/watchlist/{user_id}", status_code=201)
def add_to_watchlist(user_id: UserId, item: WatchIn, demo: Demo) -> dict:
    symbol = item.symbol.upper()
    mine = watchlist.c.user_id == user_id
    with demo.database.connect(write=True) as conn:
        if conn.scalar(select(quotes.c.symbol).where(quotes.c.symbol == symbol)) is None:
            raise HTTPException(404, f"unknown symbol {symbol}")
        present = conn.scalar(select(func.count()).select_from(watchlist)
                              .where(mine, watchlist.c.symbol == symbol)) > 0
        if not present:
            if conn.scalar(select(func.count()).select_from(watchlist).where(mine)) >= MAX_WATCHLIST:
                raise HTTPException(409, f"a watchlist holds at most {MAX_WATCHLIST} symbols")
            conn.execute(insert(watchlist).values(user_id=user_id, symbol=symbol, added_at=time.time()))
    otel.record_watchlist_operation("add")
    return {"user_id": user_id, "symbol": symbol, "added": not present}


@router.delete("/watchlist/{user_id}")
def remove_from_watchlist(
    user_id: UserId, demo: Demo, symbol: Annotated[str, Query(pattern=SYMBOL_PATTERN)],
) -> dict:
    symbol = symbol.upper()
    with demo.database.connect(write=True) as conn:
        removed = conn.execute(delete(watchlist).where(
            watchlist.c.user_id == user_id, watchlist.c.symbol == symbol)).rowcount
    if not removed:
        raise HTTPException(404, f"{symbol} is not on {user_id}'s watchlist")
    otel.record_watchlist_operation("remove")
    return {"user_id": user_id, "symbol": symbol, "removed": True}


@router.post("/sessions", status_code=201)
def login(body: LoginIn, demo: Demo) -> dict:
    if not body.password or body.password == WRONG_PASSWORD:
        otel.record_login(body.platform, False)
        raise HTTPException(401, "invalid credentials")
    session_id = secrets.token_urlsafe(16)
    demo.cache.set(f"session:{session_id}", json.dumps(
        {"user_id": body.user_id, "platform": body.platform, "started": time.time()}),
        demo.settings.session_ttl_seconds)
    otel.record_login(body.platform, True)
    otel.record_session(body.platform, "start")
    return {"session_id": session_id, "user_id": body.user_id, "platform": body.platform}


SessionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


@router.delete("/sessions/{session_id}")
def logout(session_id: SessionId, demo: Demo) -> dict:
    key = f"session:{session_id}"
    raw = demo.cache.get(key)
    # Only the request that actually deletes the key ends the session: two concurrent logouts
    # must not decrement the active-session gauge twice.
    if raw is None or not demo.cache.delete(key):
        raise HTTPException(404, "no such session")
    session = json.loads(raw)
    otel.record_session(session["platform"], "end")
    return {"session_id": session_id, "ended": True,
            "duration_seconds": round(time.time() - session["started"], 3)}
