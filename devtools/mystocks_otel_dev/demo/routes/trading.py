"""Orders and portfolios."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, insert, select, update

import mystocks_otel as otel

from ..db import orders, positions, quotes
from .common import API, SYMBOL_PATTERN, USER_PATTERN, Demo, UserId

router = APIRouter(tags=["trading"], **API)
SIDES = ("buy", "sell")
TYPES = ("market", "limit", "stop", "stop_limit")
PRICED = ("limit", "stop", "stop_limit")


class OrderIn(BaseModel):
    user_id: str = Field(pattern=USER_PATTERN)
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    # side/type are checked in the handler, not by pydantic, so a bad order is *counted*
    # as rejected (status="rejected") instead of vanishing into a bare 422.
    side: str = Field(max_length=32)
    type: str = Field(default="market", max_length=32)
    quantity: float
    price: float | None = None


class PositionIn(BaseModel):
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    quantity: float = Field(ge=0, le=1e9, description="0 removes the position")
    price: float | None = Field(default=None, gt=0, le=1e9)


def _order_row(row) -> dict:
    return {k: getattr(row, k) for k in ("id", "user_id", "symbol", "side", "type", "quantity",
                                          "price", "status", "created_at")}


def _rejection(order: OrderIn) -> str | None:
    if order.side not in SIDES:
        return f"side must be one of {', '.join(SIDES)}"
    if order.type not in TYPES:
        return f"type must be one of {', '.join(TYPES)}"
    if not 0 < order.quantity <= 1e9:
        return "quantity must be above 0"
    if order.type in PRICED and (order.price is None or not 0 < order.price <= 1e9):
        return f"a {order.type} order needs a price above 0"
    return None


def _status(order: OrderIn, market: float) -> tuple[str, float]:
    """Market orders fill at once; a marketable limit fills; the rest rest on the book."""
    if order.type == "market":
        return "filled", market
    marketable = (order.side == "buy" and order.price >= market) or (
        order.side == "sell" and order.price <= market)
    return ("filled" if order.type == "limit" and marketable else "accepted"), order.price


def _open_orders(conn, side: str) -> int:
    return conn.scalar(select(func.count()).select_from(orders)
                       .where(orders.c.side == side, orders.c.status == "accepted"))


@router.post("/orders", status_code=201)
def place_order(order: OrderIn, demo: Demo) -> dict:
    started = time.perf_counter()
    problem = _rejection(order)
    if problem:
        otel.record_order(order.side, order.type, "rejected", latency_seconds=time.perf_counter() - started)
        raise HTTPException(422, problem)
    symbol = order.symbol.upper()
    with demo.database.connect(write=True) as conn:
        market = conn.scalar(select(quotes.c.price).where(quotes.c.symbol == symbol))
        if market is None:
            otel.record_order(order.side, order.type, "rejected", latency_seconds=time.perf_counter() - started)
            raise HTTPException(404, f"unknown symbol {symbol}")
        status, price = _status(order, market)
        order_id = conn.execute(insert(orders).values(
            user_id=order.user_id, symbol=symbol, side=order.side, type=order.type,
            quantity=order.quantity, price=price, status=status, created_at=time.time(),
        ).returning(orders.c.id)).scalar_one()
        open_count = _open_orders(conn, order.side)
    otel.record_order(order.side, order.type, status, latency_seconds=time.perf_counter() - started)
    otel.set_open_orders(order.side, open_count)
    return {"id": order_id, "symbol": symbol, "side": order.side, "type": order.type,
            "quantity": order.quantity, "price": price, "status": status}


OrderId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/orders/{order_id}")
def get_order(order_id: OrderId, demo: Demo) -> dict:
    with demo.database.connect() as conn:
        row = conn.execute(select(orders).where(orders.c.id == order_id)).first()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    return _order_row(row)


@router.delete("/orders/{order_id}")
def cancel_order(order_id: OrderId, demo: Demo) -> dict:
    started = time.perf_counter()
    with demo.database.connect(write=True) as conn:
        row = conn.execute(select(orders).where(orders.c.id == order_id)).first()
        if row is None:
            raise HTTPException(404, f"no order {order_id}")
        if row.status != "accepted":
            raise HTTPException(409, f"order {order_id} is {row.status}: only open orders cancel")
        conn.execute(update(orders).where(orders.c.id == order_id).values(status="cancelled"))
        open_count = _open_orders(conn, row.side)
    otel.record_order(row.side, row.type, "cancelled", latency_seconds=time.perf_counter() - started)
    otel.set_open_orders(row.side, open_count)
    return {**_order_row(row), "status": "cancelled"}


@router.get("/portfolio/{user_id}")
def get_portfolio(user_id: UserId, demo: Demo) -> dict:
    query = (select(positions.c.symbol, positions.c.quantity, positions.c.avg_price, quotes.c.price)
             .join(quotes, quotes.c.symbol == positions.c.symbol)
             .where(positions.c.user_id == user_id).order_by(positions.c.symbol))
    with demo.database.connect() as conn:
        rows = conn.execute(query).all()
    held = [{"symbol": r.symbol, "quantity": r.quantity, "avg_price": r.avg_price, "price": r.price,
             "market_value": round(r.quantity * r.price, 2),
             "pnl": round(r.quantity * (r.price - r.avg_price), 2)} for r in rows]
    return {"user_id": user_id, "positions": held,
            "market_value": round(sum(p["market_value"] for p in held), 2)}


@router.post("/portfolio/{user_id}/positions")
def set_position(user_id: UserId, position: PositionIn, demo: Demo) -> dict:
    """Add, update or (quantity 0) remove one position."""
    symbol = position.symbol.upper()
    key = (positions.c.user_id == user_id) & (positions.c.symbol == symbol)
    with demo.database.connect(write=True) as conn:
        market = conn.scalar(select(quotes.c.price).where(quotes.c.symbol == symbol))
        if market is None:
            raise HTTPException(404, f"unknown symbol {symbol}")
        exists = conn.scalar(select(func.count()).select_from(positions).where(key)) > 0
        price, now = position.price or market, time.time()
        if position.quantity == 0:
            if not exists:
                raise HTTPException(404, f"{user_id} holds no {symbol}")
            conn.execute(delete(positions).where(key))
            operation = "remove"
        elif exists:
            conn.execute(update(positions).where(key).values(
                quantity=position.quantity, avg_price=price, updated_at=now))
            operation = "update"
        else:
            conn.execute(insert(positions).values(
                user_id=user_id, symbol=symbol, quantity=position.quantity, avg_price=price, updated_at=now))
            operation = "add"
    otel.record_portfolio_update(operation)
    return {"user_id": user_id, "symbol": symbol, "quantity": position.quantity,
            "avg_price": price, "operation": operation}
