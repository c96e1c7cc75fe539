"""The market-data simulator and the hub that fans its ticks out to WebSocket subscribers.

Every ``tick_seconds`` the simulator moves each tracked symbol's price by a small random walk,
writes the prices to the ``quotes`` table, pushes one tick per symbol to the hub, and records the
market-data and data-quality metrics. Now and then a symbol is skipped (completeness < 1) or
jumps (a "spike" anomaly), so the data-quality panels have something to show. With the
``market_data_stall`` fault on it produces nothing: freshness grows and feed errors count up;
when the feed resumes, the hole it left counts as one "gap" anomaly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field

from sqlalchemy import bindparam, update

import mystocks_otel as otel

from .db import Database, quotes
from .faults import Faults

log = logging.getLogger("mystocks_otel_dev.demo")

SOURCE = "simulator"
GAP_PROBABILITY = 0.02  # per symbol per tick: a missed update
SPIKE_PROBABILITY = 0.005  # per symbol per tick: an outsized jump, counted as an anomaly
QUEUE_SIZE = 512  # per subscriber: a slow client loses ticks rather than growing memory


@dataclass(eq=False)
class Subscriber:
    symbols: set[str] | None = None  # None: every symbol
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0

    def offer(self, kind: str, payload) -> None:
        try:
            self.queue.put_nowait((kind, payload))
        except asyncio.QueueFull:
            self.dropped += 1


class Hub:
    """Subscribers of the quote feed. Used only from the event loop, so no lock."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.symbols: frozenset[str] = frozenset()

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, ticks: list[dict]) -> None:
        for sub in list(self.subscribers):
            for tick in ticks:
                if sub.symbols is None or tick["symbol"] in sub.symbols:
                    sub.offer("text", json.dumps(tick))


class MarketSimulator:
    def __init__(self, database: Database, faults: Faults, hub: Hub, prices: dict[str, float],
                 tick_seconds: float) -> None:
        self.database = database
        self.faults = faults
        self.hub = hub
        self.prices = dict(prices)
        self.tick_seconds = tick_seconds
        self.last_tick = time.time()  # wall clock: freshness is "age of the newest quote"
        self.ticks = 0
        self._was_stalled = False
        hub.symbols = frozenset(prices)

    def freshness(self) -> float:
        return max(0.0, time.time() - self.last_tick)

    def fresh(self) -> bool:
        """The feed is healthy when not stalled and the newest tick is recent."""
        return not self.faults.state.market_data_stall and self.freshness() < max(3.0, 5 * self.tick_seconds)

    async def run(self) -> None:
        """Tick until cancelled (the app's lifespan cancels it on shutdown)."""
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.step()
            except Exception:  # noqa: BLE001 - one bad tick must not end the feed
                log.exception("market simulator tick failed")

    async def step(self) -> list[dict]:
        if self.faults.state.market_data_stall:
            self._was_stalled = True
            otel.record_market_data_error(SOURCE, "stalled")
            otel.record_data_quality("quotes", freshness_seconds=self.freshness())
            return []
        if self._was_stalled:
            # The feed is back: the stall left a hole in the series, one "gap" anomaly.
            self._was_stalled = False
            otel.record_data_quality("quotes", anomalies=1, anomaly_kind="gap")
        started = time.perf_counter()
        ticks, spikes = self._generate()
        try:
            await asyncio.to_thread(self._persist, ticks)
        except Exception as exc:  # noqa: BLE001 - the feed goes on; the DB error is counted
            log.debug("could not persist ticks: %s", exc)
            otel.record_market_data_error(SOURCE, "connection")
        self.hub.publish(ticks)
        self.last_tick = time.time()
        self.ticks += 1
        otel.record_market_data(SOURCE, "quote", points=len(ticks),
                                duration_seconds=time.perf_counter() - started)
        otel.set_symbols_tracked(SOURCE, len(self.prices))
        otel.record_data_quality(
            "quotes", completeness=len(ticks) / max(1, len(self.prices)), freshness_seconds=0.0,
            anomalies=spikes, anomaly_kind="spike",
        )
        return ticks

    def _generate(self) -> tuple[list[dict], int]:
        ticks, spikes, now = [], 0, time.time()
        for symbol, price in self.prices.items():
            if random.random() < GAP_PROBABILITY:
                continue
            move = random.gauss(0, 0.002)
            if random.random() < SPIKE_PROBABILITY:
                move, spikes = random.choice((-1, 1)) * random.uniform(0.05, 0.1), spikes + 1
            new = round(max(0.01, price * (1 + move)), 2)
            self.prices[symbol] = new
            ticks.append({"type": "tick", "symbol": symbol, "price": new,
                          "change": round(new - price, 2), "volume": random.randint(1, 500) * 100,
                          "ts": now})
        return ticks, spikes

    def _persist(self, ticks: list[dict]) -> None:
        if not ticks:
            return
        statement = (
            update(quotes).where(quotes.c.symbol == bindparam("b_symbol"))
            .values(price=bindparam("b_price"), change=bindparam("b_change"),
                    volume=quotes.c.volume + bindparam("b_volume"), updated_at=bindparam("b_ts"))
        )
        rows = [{"b_symbol": t["symbol"], "b_price": t["price"], "b_change": t["change"],
                 "b_volume": t["volume"], "b_ts": t["ts"]} for t in ticks]
        with self.database.connect(write=True, slow=False) as conn:
            conn.execute(statement, rows)
