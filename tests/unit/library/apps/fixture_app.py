"""A module-level app, as most teams write it: imported at the top of a test file, it calls
``setup_telemetry(app)`` and creates its engine and Redis client at import, before any fixture.

Used by test_testing_module_app.py (issue 14, item 4). The Redis client is made at import with
the default address; the test points its pool at the session's Redis (no connection is opened
before that).
"""

import tempfile
from pathlib import Path

import redis
from fastapi import FastAPI, WebSocket
from sqlalchemy import create_engine, text

from mystocks_otel import setup_telemetry

engine = create_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='fixture-app-')) / 'app.db'}")
cache = redis.Redis()

app = FastAPI()
telemetry = setup_telemetry(app)


@app.get("/items/{item_id}")
def item(item_id: int):
    with engine.connect() as conn:
        found = conn.execute(text("SELECT :id"), {"id": item_id}).scalar()
    cache.get(f"fixture-app:{item_id}")
    return {"id": found}


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()
