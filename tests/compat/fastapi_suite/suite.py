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
from dataclasses import dataclass, field
from pathlib import Path

from mystocks_otel_dev.stack.runner import project_root

HERE = Path(__file__).resolve().parent
ROOT = project_root(HERE)  # the checkout, found as the stack finds it (also when run as a script)
CACHE = Path(os.environ.get("MYSTOCKS_OTEL_CACHE", Path.home() / ".cache" / "mystocks-otel")) / "fastapi-suite"

# FastAPI's "tests" dependency group, less what only checks types, reports coverage or
# benchmarks (none of it changes a test outcome; the type checkers are large downloads).
SKIPPED_REQUIREMENTS = {"mypy", "ty", "pytest-codspeed", "pytest-cov", "pytest-sugar"}

# The exact versions of everything the suite's venv installs, kept in the repository and
# updated on purpose (see the file's header): FastAPI's "tests" group has lower bounds only,
# so an unpinned install drifts, and a new major version can turn FastAPI's own tests red
# even bare (sentry-sdk 3.0.0 did: it sends no "transaction" envelope items, which
# FastAPI's Sentry tests count). The file's contents are part of the venv's cache key.
CONSTRAINTS = HERE / "constraints.txt"


def constraints_fastapi(path: Path = CONSTRAINTS) -> str | None:
    """The FastAPI version the constraints were frozen for (their "Frozen for:" line)."""
    for line in path.read_text().splitlines():
        if line.startswith("# Frozen for: fastapi=="):
            return line.split("==", 1)[1].strip()
    return None

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
    """A cached venv: FastAPI ``version`` with its [all] extra, its test requirements (at the
    versions CONSTRAINTS pins), and us."""
    frozen_for = constraints_fastapi()
    if frozen_for != version:
        raise RuntimeError(f"{CONSTRAINTS.name} pins the test requirements of FastAPI {frozen_for}, "
                           f"the installed FastAPI is {version}: update it on purpose (see its header)")
    requirements = test_requirements(src)
    key = hashlib.sha256(json.dumps([version, requirements, CONSTRAINTS.read_text(), str(ROOT)]
                                    ).encode()).hexdigest()[:12]
    target = CACHE / f"venv-{version}-{key}"
    ready = target / "mystocks-otel-ready"
    if ready.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    _pip(target / "bin" / "python", "install", "-q", "-c", str(CONSTRAINTS), f"{src}[all]",
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
    """{test id: passed|failure|error|skipped} from a JUnit XML report."""
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        found[test_id] = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
    return found


@dataclass
class Comparison:
    """The two runs side by side. Only ``ours`` is the distro's doing."""

    #: passed bare, not passed under the distro (failed, errored, skipped or missing), less
    #: the documented exceptions: {test id: outcome under the distro}
    ours: dict[str, str] = field(default_factory=dict)
    #: failed or errored bare (the environment's, whatever they do under the distro):
    #: {test id: (bare outcome, outcome under the distro)}
    environment: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: documented exceptions that did differ (passed bare, not under the distro)
    excused: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        lines = []
        if self.environment:
            lines.append(f"{len(self.environment)} test(s) fail bare, so the environment's, "
                         "not the distro's (bare -> under the distro):")
            lines += [f"  {t}: {b} -> {i}" for t, (b, i) in sorted(self.environment.items())]
        if self.excused:
            lines.append(f"{len(self.excused)} documented exception(s) differ as expected:")
            lines += [f"  {t}: passed -> {i}" for t, i in sorted(self.excused.items())]
        if self.ours:
            lines.append(f"{len(self.ours)} test(s) pass bare but not under the distro:")
            lines += [f"  {t}: passed -> {i}" for t, i in sorted(self.ours.items())]
        return "\n".join(lines)


def compare(bare: dict[str, str], instrumented: dict[str, str],
            exceptions: set[str] = frozenset()) -> Comparison:
    """No test that passes bare may fail under the distro; a bare failure is the environment's."""
    result = Comparison()
    for test, before in bare.items():
        after = instrumented.get(test, "missing")
        if before in ("failure", "error"):
            result.environment[test] = (before, after)
        elif before == "passed" and after != "passed":
            (result.excused if test in exceptions else result.ours)[test] = after
    return result


if __name__ == "__main__" and sys.argv[1:] == ["prepare"]:
    version = installed_version()
    src = source(version)
    print(venv(version, src))
