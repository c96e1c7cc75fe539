"""Shared fixtures: real servers, and what to do when one is missing.

Redis and PostgreSQL: ``REDIS_URL`` / ``DATABASE_URL`` name servers to use; when they are unset
the session starts its own throwaway redis-server and PostgreSQL cluster on free ports (through
the one process harness, ``mystocks_otel_dev.stack.processes``) and stops them at the end, so a
machine where nothing runs needs nothing started beforehand.

Locally a missing binary skips the test with the reason. In CI (CI=true) it fails, so a green
run always means the real thing was exercised.
"""

from __future__ import annotations

import os
import sys

import pytest
from support import ROOT, require

from mystocks_otel_dev.stack import gotools, processes
from mystocks_otel_dev.stack.processes import ProcessError, Processes


def _start(procs: Processes, build, what: str):
    """Start the spec ``build()`` returns; skip (fail in CI) when its binary is missing."""
    try:
        spec = build()
    except ProcessError as error:
        require(False, f"{what}: {error}")
    return procs.start(spec)


@pytest.fixture(scope="session")
def session_servers(tmp_path_factory):
    """The session's own servers (started lazily by the fixtures below, stopped at the end)."""
    with Processes(tmp_path_factory.mktemp("servers")) as procs:
        yield procs


@pytest.fixture(scope="session")
def redis_url(session_servers) -> str:
    """REDIS_URL, else the session's throwaway redis-server (read-only use: never flush it)."""
    if url := os.environ.get("REDIS_URL"):
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not available"
            require(False, f"Redis not reachable at REDIS_URL={url}: {exc}")
        return url
    return _start(session_servers, lambda: processes.redis_server(session_servers.workdir / "redis"),
                  "a throwaway Redis").url


@pytest.fixture(scope="session")
def postgres_url(session_servers) -> str:
    """DATABASE_URL, else the session's throwaway PostgreSQL cluster (user postgres with a generated
    password in the URL: scram-sha-256, as the stack's,
    database test, as on the shared one). Tests may create their own databases in it."""
    if url := os.environ.get("DATABASE_URL"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 2})
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            engine.dispose()
        except Exception as exc:  # noqa: BLE001
            require(False, f"PostgreSQL not reachable at DATABASE_URL={url}: {exc}")
        return url
    return _start(session_servers, lambda: processes.postgres_server(name="session-postgresql", database="test"),
                  "a throwaway PostgreSQL").url


@pytest.fixture
def throwaway_redis(tmp_path):
    """A private redis-server on a free port, for tests that flush, stop or break it."""
    with Processes(tmp_path / "throwaway-redis") as procs:
        proc = _start(procs, lambda: processes.redis_server(procs.workdir / "data"), "a throwaway Redis")
        yield {"url": proc.url, "port": proc.port, "process": proc}


@pytest.fixture
def throwaway_postgres(tmp_path):
    """A private PostgreSQL cluster on a free port, for tests that stop or break it
    (``stop()`` is an immediate shutdown)."""
    with Processes(tmp_path / "throwaway-postgres") as procs:
        proc = _start(procs, processes.postgres_server, "a throwaway PostgreSQL")
        yield {"url": proc.url, "port": proc.port, "process": proc, "stop": lambda: procs.stop(proc.name)}


#: Which collected tests need which Go programs (beyond the fixtures below): the stack starts
#: all four.
_STACK_TESTS = ("integration/stack/test_stack.py", "live/")


def pytest_collection_modifyitems(session, config, items):
    """Start building, in the background, the Go programs this session's tests will need, in
    the order they need them (the Collector, Prometheus, Alertmanager, then the stack's
    VictoriaLogs and Jaeger): they compile at low priority on the core the tests leave idle, and each fixture
    then waits only for what is left of its build (gotools.prebuild)."""
    if os.environ.get("MYSTOCKS_PREBUILD", "1") == "0":
        return
    needed = []
    fixtures = {name for item in items for name in getattr(item, "fixturenames", ())}
    stack = any(part in str(item.path) for item in items for part in _STACK_TESTS)
    if "otelcol" in fixtures or stack:
        needed.append(gotools.COLLECTOR)
    if {"promtool", "prometheus_binary"} & fixtures:
        needed.append("prometheus")
    if {"amtool", "alertmanager_binary"} & fixtures:
        needed.append("alertmanager")
    if stack:
        needed += [t for t in ("prometheus", "alertmanager", "victorialogs", "jaeger") if t not in needed]
    if needed and not config.option.collectonly:
        gotools.prebuild(ROOT, needed, gotools.prebuild_log())


def _go_program(program: str) -> str:
    """A program built from its pinned Go module by scripts/build-go-tool.sh on first use, then
    cached (~/.cache/mystocks-otel/<tool>-<hash>/): Prometheus 3.16 (prometheus, promtool),
    Alertmanager 0.35 (alertmanager, amtool). Without Go or the module proxy the test skips
    (fails in CI); a failed build fails it."""
    try:
        return gotools.binary(ROOT, program)
    except gotools.BuildError as error:
        require(not error.unavailable, f"{program}: {error}")
        pytest.fail(f"{program}: {error}", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    return _go_program("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _go_program("amtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _go_program("prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return _go_program("alertmanager")


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
