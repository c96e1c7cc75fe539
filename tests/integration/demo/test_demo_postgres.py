"""The demo on PostgreSQL, in a database this test creates and drops (never shared tables)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from support import wait_until
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mystocks_otel_dev.demo.app import create_app
from mystocks_otel_dev.demo.settings import DemoSettings


@pytest.fixture
def throwaway_database(postgres_url):
    name = f"mystocks_demo_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_demo_on_postgresql(throwaway_database, throwaway_redis):
    settings = DemoSettings(database_url=throwaway_database, redis_url=throwaway_redis["url"],
                            tick_seconds=0.05, health_seconds=0.2)
    with TestClient(create_app(instrument=False, settings=settings)) as client:
        demo = client.app.state.demo
        assert len(client.get("/api/quotes").json()["quotes"]) >= 10
        order = client.post("/api/orders", json={"user_id": "pg", "symbol": "AAPL", "side": "sell",
                                                 "type": "limit", "quantity": 1, "price": 1e6})
        assert order.status_code == 201 and order.json()["status"] == "accepted"
        assert client.get(f"/api/orders/{order.json()['id']}").json()["side"] == "sell"
        assert client.post("/api/portfolio/pg/positions", json={"symbol": "AAPL", "quantity": 3}).status_code == 200
        assert client.get("/api/portfolio/pg").json()["positions"][0]["quantity"] == 3
        health = client.get("/health").json()
        assert health["dependencies"]["postgresql"] is True and "sqlite" not in health["dependencies"]

        # The slow-query fault is a real pg_sleep on PostgreSQL.
        client.post("/admin/faults", json={"slow_queries": True, "slow_query_seconds": 0.3})
        started = time.perf_counter()
        assert client.get("/api/quotes").status_code == 200
        assert time.perf_counter() - started >= 0.3
        client.post("/admin/faults", json={"slow_queries": False})

        assert client.post("/admin/faults", json={"db_error": True}).json()["actions"]["db_error"].startswith("ProgrammingError")
        ticks = demo.simulator.ticks
        wait_until(lambda: demo.simulator.ticks >= ticks + 3, 5, "the simulator writing ticks to PostgreSQL")
    engine = create_engine(throwaway_database)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM quotes WHERE volume > 0")) > 0
    engine.dispose()


def test_workers_starting_together_create_and_seed_the_schema_once(throwaway_database):
    """uvicorn --workers N opens the database in N processes at once: none may fail to start
    (CREATE TABLE IF NOT EXISTS alone races on PostgreSQL's catalog: a unique violation)."""
    import subprocess
    import sys

    worker = Path(__file__).with_name("open_database.py")
    workers = [subprocess.Popen([sys.executable, str(worker), throwaway_database], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    # A start barrier: every worker has imported everything and waits on stdin; release all.
    assert [w.stdout.readline().strip() for w in workers] == ["ready"] * 6
    for w in workers:
        w.stdin.write("go")
        w.stdin.flush()
    errors = [w.communicate(timeout=60)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * 6, "\n".join(e for e in errors if e)[-2000:]
    engine = create_engine(throwaway_database)
    with engine.connect() as conn:
        symbols = conn.scalars(text("SELECT symbol FROM quotes")).all()
    engine.dispose()
    assert len(symbols) == len(set(symbols)) >= 10, "seeded once"
