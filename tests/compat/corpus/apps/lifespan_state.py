"""Resources opened in a ``lifespan`` and handed to requests through lifespan state.

The state dict the lifespan yields becomes ``request.state``; start-up must run once
and shutdown must still run (and see the state) when telemetry wraps the lifespan.
"""

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request


class Pool:
    def __init__(self):
        self.queries = 0
        self.open = True

    def quote(self, symbol: str) -> float:
        self.queries += 1
        return {"AAPL": 190.5, "MSFT": 410.25}[symbol]


STARTS = []


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = Pool()
    STARTS.append(pool)
    app.state.ready = True
    print(f"compat-lifespan: startup #{len(STARTS)}", flush=True)
    yield {"pool": pool, "region": "eu-west"}
    pool.open = False
    print(f"compat-lifespan: shutdown after {pool.queries} queries", flush=True)


app = FastAPI(title="lifespan", lifespan=lifespan)


@app.get("/quote/{symbol}")
def quote(symbol: str, request: Request) -> dict:
    try:
        price = request.state.pool.quote(symbol)
    except KeyError:
        raise HTTPException(404, f"unknown symbol {symbol}") from None
    return {"symbol": symbol, "price": price, "region": request.state.region}


@app.get("/ready")
async def ready(request: Request) -> dict:
    return {"ready": request.app.state.ready, "starts": len(STARTS),
            "queries": request.state.pool.queries, "open": request.state.pool.open}


ROUTES = {"/quote/AAPL": "/quote/{symbol}", "/quote/MSFT": "/quote/{symbol}",
          "/quote/NOPE": "/quote/{symbol}", "/ready": "/ready"}


def check(client) -> None:
    assert client.get("/quote/AAPL").json() == {"symbol": "AAPL", "price": 190.5,
                                                "region": "eu-west"}
    assert client.get("/quote/MSFT").json()["price"] == 410.25
    assert client.get("/quote/NOPE").json() == {"detail": "unknown symbol NOPE"}
    assert client.get("/ready").json() == {"ready": True, "starts": 1, "queries": 3, "open": True}


def check_log(output: str) -> None:
    """Start-up ran once, and shutdown ran with the state start-up made."""
    assert output.count("compat-lifespan: startup #1") == 1, output
    assert "compat-lifespan: startup #2" not in output, output
    assert "compat-lifespan: shutdown after 3 queries" in output, output
