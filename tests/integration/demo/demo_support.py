"""Helpers for the demo tests (a module, not conftest, so tests can import it by name)."""

from __future__ import annotations

import dataclasses
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes

from support import ROOT  # noqa: E402 - the checkout, found explicitly


@contextmanager
def uvicorn_demo(env: dict[str, str], factory: str = "mystocks_otel_dev.demo.app:create_app",
                 log_path: Path | None = None, startup_timeout: float = 20.0):
    """A real uvicorn serving the demo on a free port, run by the process harness until /health
    answers; yields the base URL. Its output goes to ``log_path`` when given."""
    workdir = Path(tempfile.mkdtemp(prefix="mystocks-demo-"))
    spec = processes.uvicorn(factory, None, "--factory", "--log-level", "warning", env=env, name="demo",
                             cwd=str(ROOT))
    with Processes(workdir) as procs:
        proc = procs.start(dataclasses.replace(spec, start_timeout=startup_timeout))
        try:
            yield proc.url
        finally:
            if log_path is not None:
                procs.stop(proc.name)
                log_path.write_bytes(Path(proc.log).read_bytes())
