"""Optional libraries stay optional (issue 14): in a venv of its own with only the library,
FastAPI and uvicorn (no SQLAlchemy, no redis-py, no psycopg), and again with each optional
library alone (SQLAlchemy only, redis-py only), both modes start and serve HTTP, WebSocket and
system metrics, with no error line:

- zero code: ``<venv>/bin/opentelemetry-instrument <venv>/bin/uvicorn app:app``;
- the one line: ``setup_telemetry(app)`` in the app, ``<venv>/bin/uvicorn``.

Each absent library is skipped with one debug line (checked in the one-line mode, where the app
turns debug logging on before set-up); the library present is instrumented (a SQLite query, a
Redis GET are counted).

The venvs are cached under ``~/.cache/mystocks-otel/optional-libraries`` (or
``$MYSTOCKS_OTEL_CACHE``), keyed by a hash of what goes in them (requirements/test.txt, the
library's dependencies, the variant, Python, the checkout's path): a rerun costs only the
servers. A cold build downloads every wheel once into a wheelhouse beside them (the library's own
dependencies, FastAPI, uvicorn and websockets, uvicorn's WebSocket protocol, SQLAlchemy and
redis-py, each at the version requirements/test.txt pins, and setuptools for the editable
build), then makes the three venvs side by side, offline: ``python -m venv``, ``pip install
--no-index`` of the packages, ``pip install --no-deps -e`` of the checkout.
test_wheel.py checks the built wheel the same way, once, without the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import get, run_process, scrape, series
from support import free_port, wait_until

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[3]
CONSTRAINTS = ROOT / "requirements" / "test.txt"
CACHE = Path(os.environ.get("MYSTOCKS_OTEL_CACHE", Path.home() / ".cache" / "mystocks-otel")) / "optional-libraries"
#: What each venv adds to the library, FastAPI and uvicorn.
VARIANTS = {"none": (), "sqlalchemy": ("SQLAlchemy",), "redis": ("redis",)}
OPTIONAL = ("sqlalchemy", "redis", "psycopg", "psycopg2")
BASE = ("fastapi", "uvicorn", "websockets")

APP = '''
import logging, os, sys

from fastapi import FastAPI, WebSocket

if os.environ.get("APP_SETUP") == "1":  # the one-line mode: see what the set-up says
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mystocks_otel").setLevel(logging.DEBUG)

app = FastAPI()


@app.get("/hello/{name}")
def hello(name: str):
    return {"hello": name}


@app.get("/db")
def db():
    import sqlalchemy
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as conn:
        return {"one": conn.exec_driver_sql("SELECT 1").scalar()}


@app.get("/cache")
def cache():
    import redis
    return {"value": redis.Redis.from_url(os.environ["APP_REDIS_URL"]).get("missing")}


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


if os.environ.get("APP_SETUP") == "1":
    import mystocks_otel
    mystocks_otel.setup_telemetry(app)
'''


def _run(argv: list, timeout: float = 600) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv[:5]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def library_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([*parts, CONSTRAINTS.read_text(), sys.version]).encode()).hexdigest()[:12]


def packages_of(variant: str) -> list[str]:
    return [*library_dependencies(), *BASE, *VARIANTS[variant]]


def wheelhouse() -> Path:
    """Every wheel the venvs need, downloaded once (pip's own cache may be off or bypassed):
    the venvs then install offline from it."""
    wanted = sorted({p for variant in VARIANTS for p in packages_of(variant)}) + ["setuptools>=77", "wheel"]
    target = CACHE / f"wheels-{_key(wanted)}"
    if (target / "mystocks-otel-ready").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "download",
          "-d", target, "-c", CONSTRAINTS, *wanted])
    (target / "mystocks-otel-ready").write_text(json.dumps(wanted))
    return target


def venv(variant: str, wheels: Path) -> Path:
    """The cached venv of ``variant``, built on first use from ``wheels``."""
    packages = packages_of(variant)
    target = CACHE / f"{variant}-{_key(variant, packages, str(ROOT))}"
    ready = target / "mystocks-otel-ready"
    if ready.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "venv", target])
    pip = [target / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q", "install",
           "--no-index", "--find-links", wheels]
    _run([*pip, "-c", CONSTRAINTS, *packages])
    _run([*pip, "--no-deps", "-e", ROOT])
    ready.write_text(json.dumps(packages))
    return target


@pytest.fixture(scope="module")
def venvs() -> dict[str, Path]:
    """Every variant's venv; the missing ones built at once (pip waits on the network)."""
    missing = [v for v in VARIANTS if not (CACHE / f"{v}-{_key(v, packages_of(v), str(ROOT))}"
                                           / "mystocks-otel-ready").exists()]
    wheels = wheelhouse() if missing else None
    with ThreadPoolExecutor(len(VARIANTS)) as pool:
        return dict(zip(VARIANTS, pool.map(lambda v: venv(v, wheels), VARIANTS)))


@pytest.fixture(params=list(VARIANTS))
def variant_venv(request, venvs) -> tuple[str, Path]:
    return request.param, venvs[request.param]


def installed(python: Path) -> list[str]:
    probe = ("import importlib.util, json; "
             f"print(json.dumps([n for n in {OPTIONAL!r} if importlib.util.find_spec(n)]))")
    return json.loads(_run([python, "-c", probe]))


def websocket_echo(port: int) -> str:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        ws.send("ping")
        return ws.recv(timeout=10)


#: An error line: a logged error, a traceback, upstream's "Failed to auto initialize", an
#: exception's name (ModuleNotFoundError).
ERROR_LINE = re.compile(r"^(ERROR|CRITICAL)\b|Traceback|Failed|[A-Za-z]+Error\b")


@pytest.mark.parametrize("mode", ["zero-code", "one-line"])
def test_both_modes_serve_http_websocket_and_system_metrics(variant_venv, mode, tmp_path, request):
    variant, env_dir = variant_venv
    bin_ = env_dir / "bin"
    assert installed(bin_ / "python") == [name.lower() for name in VARIANTS[variant]]
    (tmp_path / "optional_app.py").write_text(APP)
    port = free_port()
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "PYTHONUNBUFFERED": "1",
           "HOME": str(tmp_path), "MYSTOCKS_OTEL_PROBE_INTERVAL": "0.2",
           "APP_SETUP": "1" if mode == "one-line" else "0"}
    if variant == "redis":
        env["APP_REDIS_URL"] = request.getfixturevalue("throwaway_redis")["url"]
    server = [bin_ / "uvicorn", "optional_app:app", "--host", "127.0.0.1", "--port", str(port)]
    argv = [bin_ / "opentelemetry-instrument", *server] if mode == "zero-code" else server
    with run_process([str(a) for a in argv], tmp_path, env) as proc:
        proc.wait_port(port, timeout=60)
        assert get(port, "/hello/world") == (200, '{"hello":"world"}')
        assert websocket_echo(port) == "ping"
        if variant == "sqlalchemy":
            assert get(port, "/db") == (200, '{"one":1}')
        if variant == "redis":
            assert get(port, "/cache") == (200, '{"value":null}')

        def served():
            text = scrape(port)
            found = {
                "http": [(s.labels.get("http_route"), s.value)
                         for s in series(text, "http_server_request_duration_seconds_count")
                         if s.labels.get("http_route") != "/metrics"],
                "websocket": [(s.labels["namespace"], s.value)
                              for s in series(text, "mystocks_websocket_connections_opened_total")],
                "system": bool(series(text, "mystocks_system_cpu_utilization_percent")),
                "db": sum(s.value for s in series(text, "mystocks_db_query_duration_seconds_count")),
                "redis": sum(s.value for s in series(text, "mystocks_redis_command_duration_seconds_count")),
            }
            return found if found["system"] and found["websocket"] else None

        found = wait_until(served, timeout=30, what="HTTP, WebSocket and system metrics", proc=proc.proc)
        expected = {"/hello/{name}": 1.0}
        expected.update({"sqlalchemy": {"/db": 1.0}, "redis": {"/cache": 1.0}}.get(variant, {}))
        assert dict(found["http"]) == expected
        assert found["websocket"] == [("/ws", 1.0)]
        assert found["db"] == (1.0 if variant == "sqlalchemy" else 0)
        assert found["redis"] == (1.0 if variant == "redis" else 0)
        output = proc.output()
    errors = [line for line in output.splitlines() if ERROR_LINE.search(line)]
    assert not errors, output[-3000:]
    if mode == "one-line":  # one debug line per absent library, from our runtime
        for library in ("sqlalchemy", "redis"):
            skipped = [line for line in output.splitlines()
                       if line.startswith("DEBUG mystocks_otel") and f'"{library}' in line]
            assert len(skipped) == (0 if library == variant else 1), output[-3000:]
