"""A small app for the zero-code distro tests. It never calls setup_telemetry.

The engine comes from a user wrapper around ``create_engine`` bound at import
time, so patching ``sqlalchemy.create_engine`` later would not see it.
"""

import os

import redis
from fastapi import FastAPI, WebSocket
from sqlalchemy import create_engine as _ce
from sqlalchemy import text

import mystocks_otel


def make_engine(url):
    return _ce(url)


engine = make_engine("sqlite:///" + os.path.join(os.getcwd(), "app.db"))
cache = redis.Redis.from_url(os.environ["APP_REDIS_URL"], socket_timeout=2,
                             socket_connect_timeout=2)


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def get_item(item_id: str):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        cache.get("mystocks-otel-test:absent:" + item_id)  # read-only on the shared Redis
        mystocks_otel.record_order("buy", "limit", "filled")
        return {"id": item_id}

    @app.websocket("/ws/{room}")
    async def echo(websocket: WebSocket, room: str):
        await websocket.accept()
        message = await websocket.receive_text()
        await websocket.send_text(f"{room}:{message}")
        await websocket.close()

    return app


if os.environ.get("APP_FACTORY") != "1":
    app = build()
