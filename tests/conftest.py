"""Shared fixtures: real servers, and what to do when one is missing.

Locally a missing Redis/PostgreSQL/Prometheus binary skips the test with the reason.
In CI (CI=true) it fails, so a green run always means the real thing was exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import free_port, require, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/bin") / name, Path("/usr/sbin") / name) if p.exists()), None
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis (read-only use: never flush it)."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        require(False, f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The shared PostgreSQL (user postgres, trust auth, database test)."""
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        require(False, f"PostgreSQL not reachable at {url}: {exc}")
    return url


@pytest.fixture
def throwaway_redis(tmp_path):
    """A private redis-server on a free port, for tests that flush, stop or break it."""
    binary = which("redis-server")
    require(binary is not None, "redis-server binary not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield {"url": f"redis://127.0.0.1:{port}/0", "port": port, "process": proc}
    finally:
        stop_process(proc)


@pytest.fixture
def throwaway_postgres():
    """A private PostgreSQL cluster on a free port (initdb as the postgres user)."""
    bindir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    require(bindir is not None and os.geteuid() == 0, "needs root and /usr/lib/postgresql/*/bin")
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="pg-"))
    shutil.chown(data, "postgres", "postgres")
    run = lambda *args: subprocess.run(  # noqa: E731
        ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60
    )
    run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "--no-sync", "-U", "postgres")
    run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off", "start")
    try:
        yield {"url": f"postgresql://postgres@127.0.0.1:{port}/postgres", "port": port,
               "stop": lambda: run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")}
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D",
                        str(data / "db"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def _tool(name: str) -> str:
    path = which(name)
    require(path is not None, f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _tool("prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return _tool("prometheus-alertmanager") if which("prometheus-alertmanager") else _tool("alertmanager")


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
