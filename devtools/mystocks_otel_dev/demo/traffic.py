"""A bounded traffic generator for the demo: every route, good and hostile input, and WebSockets.

``run_traffic()`` stops by itself after ``duration_s`` (and after ``max_requests``), and every
request and WebSocket wait has a timeout. The hostile variety (random user ids, unknown and
malformed symbols, bad orders, unknown paths) is there to show that labels stay bounded.

    mystocks-otel traffic --base-url http://127.0.0.1:8000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import time
from collections import Counter

import httpx
import websockets

SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "BABA", "600519.SH", "000001.SZ", "0700.HK")
HOSTILE = ("NOPE", "ZZZZ9", "../../etc", "a" * 300, "%00", "DROP TABLE", "ñandú", "AAPL;--", "")
PLATFORMS = ("web", "ios", "android", "api", "desktop", "smart-fridge", "x" * 40)
REQUEST_TIMEOUT = 10.0
WS_TIMEOUT = 5.0


def _symbol(rng: random.Random) -> str:
    return rng.choice(SYMBOLS) if rng.random() < 0.8 else rng.choice(HOSTILE)


def _user(rng: random.Random) -> str:
    # Thousands of distinct ids: each is a path parameter, never a label.
    return "u" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 12)))


async def _one(client: httpx.AsyncClient, rng: random.Random, state: dict) -> httpx.Response:
    """One request, chosen at random across every route."""
    user, symbol = _user(rng), _symbol(rng)
    pick = rng.random()
    if pick < 0.30:
        return await client.get(f"/api/quotes/{symbol}")
    if pick < 0.36:
        return await client.get("/api/quotes")
    if pick < 0.48:
        side = rng.choice(("buy", "sell", "buy", "hold"))
        kind = rng.choice(("market", "limit", "limit", "stop", "iceberg"))
        body = {"user_id": user, "symbol": symbol, "side": side, "type": kind,
                "quantity": rng.choice((1, 10, 100, 0, -5)), "price": round(rng.uniform(1, 2000), 2)}
        response = await client.post("/api/orders", json=body)
        if response.status_code == 201:
            state["orders"].append(response.json()["id"])
        return response
    if pick < 0.54:
        order_id = rng.choice(state["orders"]) if state["orders"] and rng.random() < 0.7 else rng.randint(1, 10**9)
        if rng.random() < 0.3:
            return await client.delete(f"/api/orders/{order_id}")
        return await client.get(f"/api/orders/{order_id}")
    if pick < 0.62:
        return await client.get(f"/api/portfolio/{user}")
    if pick < 0.68:
        return await client.post(f"/api/portfolio/{user}/positions",
                                 json={"symbol": symbol, "quantity": rng.choice((0, 5, 50))})
    if pick < 0.76:
        method = rng.choice(("GET", "POST", "DELETE"))
        if method == "GET":
            return await client.get(f"/api/watchlist/{user}")
        if method == "POST":
            return await client.post(f"/api/watchlist/{user}", json={"symbol": symbol})
        return await client.delete(f"/api/watchlist/{user}", params={"symbol": symbol})
    if pick < 0.86:
        if state["sessions"] and rng.random() < 0.5:
            return await client.delete(f"/api/sessions/{state['sessions'].pop()}")
        password = "wrong" if rng.random() < 0.2 else "secret"
        response = await client.post("/api/sessions", json={
            "user_id": user, "password": password, "platform": rng.choice(PLATFORMS)})
        if response.status_code == 201:
            state["sessions"].append(response.json()["session_id"])
        return response
    if pick < 0.92:
        return await client.get("/health")
    # Unknown paths: each is a distinct URL, all one route label.
    return await client.get(f"/api/{_user(rng)}/{_symbol(rng)}")


async def _http_worker(client, rng, deadline, budget, counts, state) -> None:
    while time.monotonic() < deadline and budget["left"] > 0:
        budget["left"] -= 1
        try:
            response = await _one(client, rng, state)
            counts[str(response.status_code)] += 1
        except httpx.HTTPError as exc:
            counts[f"error:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)  # a down server: do not spin


async def _ws_client(url: str, rng: random.Random, deadline: float, stats: Counter) -> None:
    """Connect, subscribe, read ticks, ping; reconnect until the deadline (bounded by it)."""
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, open_timeout=WS_TIMEOUT, close_timeout=2) as ws:
                stats["connections"] += 1
                await ws.send(json.dumps({"subscribe": rng.sample(SYMBOLS, 3) + [rng.choice(HOSTILE)]}))
                stats["sent"] += 1
                session_end = min(deadline, time.monotonic() + rng.uniform(1, 5))
                while time.monotonic() < session_end:
                    if rng.random() < 0.1:
                        await ws.send(b"ping")
                        stats["sent"] += 1
                    if rng.random() < 0.05:
                        await ws.send("not json")
                        stats["sent"] += 1
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=min(WS_TIMEOUT, max(0.05, session_end - time.monotonic())))
                        stats["received"] += 1
                    except asyncio.TimeoutError:
                        pass
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
            stats[f"error:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.2)  # back off before reconnecting: a down server must not be hammered


def _ws_url(base_url: str) -> str:
    return base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/") + "/ws/quotes"


async def run_traffic_async(base_url: str, duration_s: float = 10, concurrency: int = 4,
                            websocket_clients: int = 1, max_requests: int = 100_000,
                            seed: int | None = None) -> dict:
    if not 0 < duration_s <= 24 * 3600:
        raise ValueError("duration_s must be above 0 and at most a day")
    if not 1 <= concurrency <= 256 or not 0 <= websocket_clients <= 256:
        raise ValueError("concurrency must be 1-256 and websocket_clients 0-256")
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + duration_s
    counts: Counter = Counter()
    ws_stats: Counter = Counter()
    state = {"orders": [], "sessions": []}
    budget = {"left": max_requests}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        jobs = [_http_worker(client, random.Random(rng.random()), deadline, budget, counts, state)
                for _ in range(concurrency)]
        jobs += [_ws_client(_ws_url(base_url), random.Random(rng.random()), deadline, ws_stats)
                 for _ in range(websocket_clients)]
        # The workers stop at the deadline; the extra time covers one in-flight request each.
        await asyncio.wait_for(asyncio.gather(*jobs), timeout=duration_s + REQUEST_TIMEOUT + WS_TIMEOUT + 5)
    return {"requests": sum(counts.values()), "by_status": dict(sorted(counts.items())),
            "websocket": dict(sorted(ws_stats.items())),
            "duration_s": round(time.monotonic() - started, 3)}


def run_traffic(base_url: str, duration_s: float = 10, concurrency: int = 4,
                websocket_clients: int = 1, **kwargs) -> dict:
    """Drive the demo at ``base_url`` for ``duration_s`` seconds; return counts by status."""
    return asyncio.run(run_traffic_async(base_url, duration_s, concurrency, websocket_clients, **kwargs))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mystocks-otel traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000",
                        help="where the demo API runs (default http://127.0.0.1:8000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="HTTP requests in flight at once (default 4)")
    parser.add_argument("--websocket-clients", type=int, default=1,
                        help="quote-feed WebSocket clients kept open meanwhile (default 1)")
    parser.add_argument("--max-requests", type=int, default=100_000,
                        help="stop after this many HTTP requests, whatever the duration (default 100000)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed, for a repeatable mix of requests (default: random)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `mystocks-otel traffic -- --base-url ...` forwards the separator
        argv = argv[1:]
    args = parser.parse_args(argv)
    try:
        result = run_traffic(args.base_url, args.duration, args.concurrency, args.websocket_clients,
                             max_requests=args.max_requests, seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(result, indent=2))
    statuses = result["by_status"]
    # Exit 1 when nothing answered at all (wrong URL, server down): a script can tell.
    return 0 if any(not k.startswith("error:") for k in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
