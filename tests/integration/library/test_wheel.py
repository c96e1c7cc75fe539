"""The library's wheel, installed alone in a fresh venv, instruments a plain FastAPI app under
``opentelemetry-instrument`` and brings nothing of the mixin or the dev tools.

One test, about a minute: ``python -m build --wheel`` of a copy of the library's sources (the
shared checkout gets no ``build/``), a new venv, ``pip install <wheel> fastapi uvicorn`` from
PyPI (the versions of this venv), then a real uvicorn process. No SQLAlchemy and no Redis are
installed there: their instrumentors are skipped and the app is instrumented all the same.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from harness import get, run_process, scrape, series
from support import free_port, wait_until

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[3]
NOT_IN_THE_WHEEL = ("mystocks_otel_dev", "mystocks_otel_mixin", "mystocks_otel/demo",
                    "mystocks_otel/stack", "mystocks_otel/mixin")
NOT_IN_THE_VENV = ("yaml", "grafana_foundation_sdk", "mystocks_otel_dev", "mystocks_otel_mixin",
                   "sqlalchemy", "redis")
APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello/{name}")
def hello(name: str):
    return {"hello": name}
"""


def run(argv: list, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{argv[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "mystocks_otel", source / "mystocks_otel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", source], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("mystocks_otel-*.whl")
    return wheel


def test_the_wheel_alone_instruments_a_plain_app_and_brings_no_mixin_or_dev_tools(tmp_path):
    wheel = build_wheel(tmp_path)
    files = zipfile.ZipFile(wheel).namelist()
    assert not [f for f in files if f.startswith(NOT_IN_THE_WHEEL)], files
    for expected in ("mystocks_otel/__init__.py", "mystocks_otel/_internal/state.py",
                     "mystocks_otel/_internal/multiprocess/merge.py",
                     "mystocks_otel/integrations/sqlalchemy.py"):
        assert expected in files, expected
    entry_points = zipfile.ZipFile(wheel).read(
        next(f for f in files if f.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[opentelemetry_instrumentor]" in entry_points and "[opentelemetry_distro]" in entry_points

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    bin_ = venv / "bin"
    run([bin_ / "pip", "install", "--disable-pip-version-check", "-q", wheel,
         f"fastapi=={version('fastapi')}", f"uvicorn=={version('uvicorn')}"], tmp_path, timeout=600)
    probe = textwrap.dedent(f"""
        import importlib.util, json
        print(json.dumps([n for n in {NOT_IN_THE_VENV!r} if importlib.util.find_spec(n) is not None]))
    """)
    assert run([bin_ / "python", "-c", probe], tmp_path).strip() == "[]"

    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "plain_app.py").write_text(APP)
    port = free_port()
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PYTHONPATH": str(app_dir), "PYTHONUNBUFFERED": "1",
           "HOME": str(tmp_path)}
    argv = [str(bin_ / "opentelemetry-instrument"), str(bin_ / "uvicorn"), "plain_app:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with run_process(argv, app_dir, env) as proc:
        proc.wait_port(port, timeout=60)
        assert get(port, "/hello/world") == (200, '{"hello":"world"}')

        def served():
            points = series(scrape(port), "http_server_request_duration_seconds_count")
            return [(p.labels.get("http_route"), p.value) for p in points] or None

        assert wait_until(served, what="the request on /metrics") == [("/hello/{name}", 1.0)]
        output = proc.output()
    assert "Traceback" not in output and "only instruments" not in output, output
