"""The monitoring stack's Go programs, built from their pinned Go modules on first use.

``scripts/build-go-tool.sh <tool>`` builds the programs of ``tools/<tool>/go.mod`` (its
``tool`` lines) against the committed ``go.sum`` and caches them in
``~/.cache/mystocks-otel/<tool>-<hash>/``; a second call only prints that folder. The stack
(:mod:`.runner`) and the tests' fixtures (``tests/conftest.py``) both find binaries here.

=================  =========================================  ==============================
tool               programs                                   module
=================  =========================================  ==============================
``prometheus``     ``prometheus``, ``promtool``               github.com/prometheus/prometheus v0.316.0 (3.16.0)
``alertmanager``   ``alertmanager``, ``amtool``               github.com/prometheus/alertmanager v0.35.0
``jaeger``         ``jaeger`` (v2, on the Collector's core)   github.com/jaegertracing/jaeger v1.75.0
``victorialogs``   ``victoria-logs``                          github.com/VictoriaMetrics/VictoriaLogs v1.52.2
=================  =========================================  ==============================
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

#: The script's exit status when Go or the module proxy is unavailable (tests skip locally).
UNAVAILABLE = 2
BUILD_TIMEOUT = 3600.0

#: What the first build of each tool costs, measured cold on this project's 2-core machine
#: while other test sessions ran (load average 15-19; the Collector's packages already in the
#: shared Go cache). Said before a build starts.
FIRST_BUILD = {
    "prometheus": "1283 Go packages (~130 modules), about 5-10 minutes on 2 cores",
    "alertmanager": "765 Go packages, about 2-5 minutes on 2 cores",
    "jaeger": "2324 Go packages (every storage backend Jaeger ships), about 15-25 minutes on 2 cores",
    "victorialogs": "306 Go packages, about 1-2 minutes on 2 cores",
}

PROGRAMS = {"prometheus": "prometheus", "promtool": "prometheus", "alertmanager": "alertmanager",
            "amtool": "alertmanager", "jaeger": "jaeger", "victoria-logs": "victorialogs"}


class BuildError(RuntimeError):
    """The build failed; ``unavailable`` when Go or the module proxy is missing (exit 2)."""

    def __init__(self, message: str, unavailable: bool = False):
        super().__init__(message)
        self.unavailable = unavailable


def script(root: Path) -> Path:
    return root / "scripts" / "build-go-tool.sh"


def cached_dir(root: Path, tool: str) -> Path:
    """Where the tool's binaries live for the current pins (``--path``; builds nothing)."""
    done = subprocess.run([str(script(root)), tool, "--path"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BuildError(f"build-go-tool.sh {tool} --path: {done.stderr.strip()[-300:]}",
                         done.returncode == UNAVAILABLE)
    return Path(done.stdout.strip().splitlines()[-1])


def is_built(root: Path, program: str) -> bool:
    return os.access(cached_dir(root, PROGRAMS[program]) / program, os.X_OK)


def build(root: Path, tool: str, on_line: Callable[[str], None] | None = None,
          timeout: float = BUILD_TIMEOUT) -> Path:
    """The folder of ``tool``'s binaries, built first when needed. ``on_line`` receives the
    build's progress lines as they come (without the script's name).

    The build runs in its own session with its output in files, so a caller that is killed
    (a test run's timeout, Ctrl-C) does not kill a build that others wait for: it finishes,
    and the next caller finds it cached (or waits on the script's lock)."""
    argv = [str(script(root)), tool]
    prefix = f"build-go-tool.sh {tool}: "
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"mystocks-build-{tool}-") as folder:
        out_path, err_path = Path(folder) / "stdout", Path(folder) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout
        with err_path.open() as progress:
            while True:
                finished = proc.poll() is not None
                for line in progress.readlines():
                    line = line.rstrip("\n").removeprefix(prefix)
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
                if finished:
                    break
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
                    raise BuildError(f"building {tool} took over {timeout:.0f} s")
                time.sleep(0.2)
        stdout = out_path.read_text()
    if proc.returncode != 0:
        tail = [line for line in lines if line.strip()][-3:] or ["(no output)"]
        raise BuildError(f"build-go-tool.sh {tool} exited {proc.returncode}: {' | '.join(tail)}",
                         proc.returncode == UNAVAILABLE)
    last = stdout.strip().splitlines()[-1:]
    if not last:
        raise BuildError(f"build-go-tool.sh {tool} printed no folder")
    return Path(last[0])


def prebuild(root: Path, tools: list[str], log: Path) -> subprocess.Popen | None:
    """Start building ``tools`` (those not cached yet), one after the other, in the background
    at low CPU priority, and return at once: a test session starts them first, so that they
    compile on the core the tests leave idle instead of each test waiting for its build. A
    later :func:`build` of the same tool waits for it (the script's lock) and then finds it
    cached. The builds outlive the caller; their output goes to ``log``."""
    missing = [tool for tool in tools if not _cached(root, tool)]
    if not missing:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    # "collector" is collector/build.sh's build (the same lock-then-cached behaviour).
    commands = " ; ".join(f"{collector_script(root) if tool == COLLECTOR else script(root)!s} "
                          f"{'' if tool == COLLECTOR else tool} || true" for tool in missing)
    with log.open("ab") as out:
        return subprocess.Popen(["nice", "-n", "15", "bash", "-c", commands], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


#: prebuild's name for the Collector's build (collector/build.sh).
COLLECTOR = "collector"


def collector_script(root: Path) -> Path:
    return root / "collector" / "build.sh"


def prebuild_log() -> Path:
    """Where :func:`prebuild` writes (beside the builds)."""
    base = os.environ.get("GO_TOOLS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mystocks-otel"
    return Path(base) / "prebuild.log"


def _cached(root: Path, tool: str) -> bool:
    if tool == COLLECTOR:
        done = subprocess.run([str(collector_script(root)), "--path"], capture_output=True, text=True, timeout=60)
        return done.returncode != 0 or os.access(done.stdout.strip(), os.X_OK)
    try:
        folder = cached_dir(root, tool)
    except BuildError:
        return True  # nothing to start: the fixture's own build says why
    return all(os.access(folder / program, os.X_OK) for program, owner in PROGRAMS.items() if owner == tool)


def binary(root: Path, program: str, on_line: Callable[[str], None] | None = None) -> str:
    """The path of one program (``promtool``, ``alertmanager``, ...), built first when needed."""
    path = build(root, PROGRAMS[program], on_line) / program
    if not os.access(path, os.X_OK):
        raise BuildError(f"{path} missing after its build")
    return str(path)
