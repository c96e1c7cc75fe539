"""The demo's database: four tables, a seed, and the slow-query / error faults.

SQLite by default, PostgreSQL (or anything SQLAlchemy speaks) through ``DATABASE_URL``.
Sync SQLAlchemy on purpose: the routes that use it are plain ``def`` handlers, which FastAPI
runs in its thread pool, the way most SQLAlchemy services are written.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from sqlalchemy import (
    Column, Float, Integer, MetaData, String, Table, create_engine, event, insert, select, text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .faults import DependencyDown, Faults

TABLES = ("quotes", "orders", "positions", "watchlist")
#: Errors that mean "the database is unreachable" (503), not "the query is wrong" (500).
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)

metadata = MetaData()
quotes = Table(
    "quotes", metadata,
    Column("symbol", String(16), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("price", Float, nullable=False),
    Column("change", Float, nullable=False, default=0.0),
    Column("volume", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)
orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=False, index=True),
    Column("symbol", String(16), nullable=False),
    Column("side", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("price", Float),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)
positions = Table(
    "positions", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("symbol", String(16), primary_key=True),
    Column("quantity", Float, nullable=False),
    Column("avg_price", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
watchlist = Table(
    "watchlist", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("symbol", String(16), primary_key=True),
    Column("added_at", Float, nullable=False),
)

SEED = {
    "AAPL": ("Apple Inc.", 189.5), "MSFT": ("Microsoft Corp.", 415.2),
    "GOOGL": ("Alphabet Inc.", 141.8), "AMZN": ("Amazon.com Inc.", 178.3),
    "TSLA": ("Tesla Inc.", 201.4), "NVDA": ("NVIDIA Corp.", 875.0),
    "BABA": ("Alibaba Group", 74.6), "600519.SH": ("Kweichow Moutai", 1688.0),
    "000001.SZ": ("Ping An Bank", 10.4), "0700.HK": ("Tencent Holdings", 302.2),
}


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    # pg_sleep() in SQLite too, so the slow-query fault is one statement on both backends;
    # WAL so the simulator's writes do not wait behind a slow reader.
    dbapi_conn.create_function("pg_sleep", 1, lambda seconds: time.sleep(float(seconds)))
    dbapi_conn.execute("PRAGMA journal_mode=WAL")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, pool_timeout=5, connect_args=connect_args)


class Database:
    def __init__(self, url: str, faults: Faults) -> None:
        self.url = url
        self.faults = faults
        self.engine: Engine | None = None

    @property
    def dependency(self) -> str:
        """The label value of this backend in mystocks_health_dependency_availability."""
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    def open(self) -> None:
        """Create the engine (after setup_telemetry, so it is instrumented), the tables, the seed."""
        self.engine = make_engine(self.url)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several workers start at once on one database: one creates and seeds at a
                # time (CREATE TABLE IF NOT EXISTS alone races on PostgreSQL's catalog).
                conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            metadata.create_all(conn)
            present = set(conn.scalars(select(quotes.c.symbol)))
            now = time.time()
            missing = [
                {"symbol": s, "name": n, "price": p, "change": 0.0, "volume": 0, "updated_at": now}
                for s, (n, p) in SEED.items() if s not in present
            ]
            if missing:
                conn.execute(insert(quotes), missing)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    @contextlib.contextmanager
    def connect(self, *, write: bool = False, slow: bool = True) -> Iterator[Connection]:
        """A connection for one request; the faults apply here.

        ``slow`` runs the slow-query fault's ``pg_sleep`` first when it is on (the simulator and
        the health probe pass ``slow=False``: the fault models slow request queries).
        """
        self.faults.check_dependency("database")
        try:
            with (self.engine.begin() if write else self.engine.connect()) as conn:
                state = self.faults.state
                if slow and state.slow_queries:
                    # FROM quotes so the slow query carries a table label, LIMIT 1 so it sleeps once.
                    conn.execute(text("SELECT pg_sleep(:s) FROM quotes LIMIT 1"),
                                 {"s": state.slow_query_seconds})
                yield conn
        except UNREACHABLE as exc:
            raise DependencyDown("database", type(exc).__name__) from exc

    def healthy(self) -> bool:
        if self.faults.state.dependency_down == "database" or self.engine is None:
            return False
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            return False

    def provoke_error(self) -> str:
        """A real failing statement (for the query-error metric): a table that does not exist."""
        self.faults.check_dependency("database")
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT * FROM mystocks_demo_missing_table"))
        except Exception as exc:  # noqa: BLE001 - the error is the point
            return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        return "none"
