"""FastAPI's own test suite, from the source package of the installed FastAPI, run bare and
under our distro (helpers for test_fastapi_suite.py; also ``python suite.py prepare``).

Everything is cached under ``~/.cache/mystocks-otel/fastapi-suite`` (or
``$MYSTOCKS_OTEL_CACHE/fastapi-suite``): the sdist, and a venv of its own (never the
project's .venv) with FastAPI, FastAPI's test requirements and mystocks-otel (editable).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from mystocks_otel_dev.stack.runner import project_root

HERE = Path(__file__).resolve().parent
ROOT = project_root(HERE)  # the checkout, found as the stack finds it (also when run as a script)
CACHE = Path(os.environ.get("MYSTOCKS_OTEL_CACHE", Path.home() / ".cache" / "mystocks-otel")) / "fastapi-suite"

# FastAPI's "tests" dependency group, less what only checks types, reports coverage or
# benchmarks (none of it changes a test outcome; the type checkers are large downloads).
SKIPPED_REQUIREMENTS = {"mypy", "ty", "pytest-codspeed", "pytest-cov", "pytest-sugar"}

# Upper bounds FastAPI's "tests" group lacks, for major versions newer than its tests (pip
# constraints: they bound a package only if the group installs it). Each fixes the
# environment, never our distro: with it the bare run is FastAPI's green suite again.
# - sentry-sdk<3: FastAPI 0.165 asks for sentry-sdk>=2.70.0; 3.0.0 sends spans only (span
#   streaming, no "transaction" envelope items) and FastAPI's Sentry tests count
#   transactions. With 3.0.0 these fail bare and instrumented alike, with the same envelope
#   items in both runs; with 2.76.0 they pass in both runs:
#     test_integrations.py::test_current_sentry[1.0]
#     test_environment_integrations.py::test_environment_export_with_existing_integrations[sentry-classic]
CONSTRAINTS = ["sentry-sdk<3"]

# Environment a run must not inherit: it would configure one of the two runs differently.
STRIPPED_PREFIXES = ("OTEL_", "MYSTOCKS_OTEL_", "FASTAPI_OTEL_", "LOGFIRE_", "SENTRY_")


def installed_version() -> str:
    return importlib.metadata.version("fastapi")


def _pip(python: Path | str, *args: str, timeout: float = 900) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args[:3])}... failed:\n{proc.stderr[-3000:]}")


def source(version: str) -> Path:
    """The unpacked sdist of FastAPI ``version`` (its tests/, docs_src/ and pyproject.toml)."""
    target = CACHE / f"fastapi-{version}"
    if (target / "tests").is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    _pip(sys.executable, "download", f"fastapi=={version}", "--no-binary", ":all:", "--no-deps",
         "-d", str(CACHE))
    with tarfile.open(CACHE / f"fastapi-{version}.tar.gz") as archive:
        archive.extractall(CACHE, filter="data")
    return target


def test_requirements(src: Path) -> list[str]:
    """FastAPI's ``tests`` dependency group (include-groups resolved), less SKIPPED_REQUIREMENTS."""
    groups = tomllib.loads((src / "pyproject.toml").read_text())["dependency-groups"]

    def resolve(name: str) -> list[str]:
        found = []
        for item in groups[name]:
            found += resolve(item["include-group"]) if isinstance(item, dict) else [item]
        return found

    def project(requirement: str) -> str:
        return requirement.replace(" ", "").split(">")[0].split("<")[0].split("=")[0].split("[")[0]

    return [r for r in resolve("tests") if project(r).lower() not in SKIPPED_REQUIREMENTS]


def venv(version: str, src: Path) -> Path:
    """A cached venv: FastAPI ``version`` with its [all] extra, its test requirements (within
    CONSTRAINTS), and us."""
    requirements = test_requirements(src)
    key = hashlib.sha256(json.dumps([version, requirements, CONSTRAINTS, str(ROOT)]).encode()
                         ).hexdigest()[:12]
    target = CACHE / f"venv-{version}-{key}"
    ready = target / "mystocks-otel-ready"
    if ready.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    constraints = target / "constraints.txt"
    constraints.write_text("".join(f"{c}\n" for c in CONSTRAINTS))
    _pip(target / "bin" / "python", "install", "-q", "-c", str(constraints), f"{src}[all]",
         *requirements, "-e", str(ROOT))
    ready.write_text(json.dumps(requirements))
    return target


def run_env(env_dir: Path, instrumented: bool, probe: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(STRIPPED_PREFIXES) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(HERE)  # the probe plugin
    env["MYSTOCKS_SUITE_PROBE"] = str(probe)
    if instrumented:
        env["OTEL_PYTHON_DISTRO"] = env["OTEL_PYTHON_CONFIGURATOR"] = "mystocks"
    return env


def start(env_dir: Path, src: Path, selection: list[str], instrumented: bool, out: Path):
    """Start one run; its JUnit XML, probe and log land in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [str(env_dir / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            # our pytest11 fixture plugin would load mystocks-otel (and the SDK) into the
            # bare run too: both runs leave it out, so the distro is the one difference
            "-p", "no:mystocks_otel", "-p", "suite_probe",
            f"--junitxml={out / 'junit.xml'}", *selection]
    if instrumented:
        argv = [str(env_dir / "bin" / "opentelemetry-instrument"), *argv]
    log = open(out / "log.txt", "w")
    return subprocess.Popen(argv, cwd=src, env=run_env(env_dir, instrumented, out / "probe.json"),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def outcomes(junit: Path) -> dict[str, str]:
    """{test id: passed|failed|error|skipped} from a JUnit XML report."""
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        found[test_id] = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
    return found


if __name__ == "__main__" and sys.argv[1:] == ["prepare"]:
    version = installed_version()
    src = source(version)
    print(venv(version, src))
