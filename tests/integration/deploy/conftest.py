"""Fixtures for the deployment files: collector/, prometheus/, docker-compose.yml.

Helpers are fixtures (not imports): tests/ is not a package, so two conftest modules
cannot import each other reliably. tests/conftest.py's fixtures (promtool, ...) apply here.
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from support import ROOT  # noqa: E402 - the checkout, found explicitly
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BUILD_TIMEOUT = 1800  # first build: ~250 Go modules + 4-7 min of go build on 2 cores

_ENV_DEFAULT = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


def _need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI (the rule in tests/conftest.py)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def need():
    return _need


def env_defaults(value):
    """A config value as the collector sees it with no OTELCOL_* variable set."""
    if isinstance(value, dict):
        return {k: env_defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [env_defaults(v) for v in value]
    if isinstance(value, str):
        return _ENV_DEFAULT.sub(lambda m: m.group(2), value)
    return value


def merge(base: dict, overlay: dict) -> dict:
    """The collector's merge of several --config files: maps merge, lists are replaced."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="session")
def collector() -> SimpleNamespace:
    """collector/otelcol.yaml, the overlay and their merge, ${env:...} resolved to defaults."""
    base = load_yaml("collector/otelcol.yaml")
    overlay = load_yaml("collector/overlay-contrib.yaml")
    return SimpleNamespace(raw_base=base, base=env_defaults(base), overlay=env_defaults(overlay),
                           merged=env_defaults(merge(base, overlay)))


@pytest.fixture(scope="session")
def prometheus_config() -> dict:
    return load_yaml("prometheus/prometheus.yml")


@pytest.fixture(scope="session")
def otelcol() -> str:
    """The real Collector, built by collector/build.sh with the OpenTelemetry Collector
    Builder from pinned Go modules (collector/builder-config.yaml, locked by
    collector/dist/go.{mod,sum}), cached outside the clone and keyed by the pins.

    When the Go toolchain or the module proxy is unavailable (build.sh exit 2: no Go, a Go
    older than go.mod's, network down, a pinned version the proxy no longer serves) the tests
    that need it skip loudly, in CI too: that is the machine, not us. Any other failure (a
    stale lock, dist/ does not compile) is ours and fails.
    """
    try:
        proc = subprocess.run([str(ROOT / "collector" / "build.sh")], capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"collector/build.sh did not finish in {BUILD_TIMEOUT} s", pytrace=False)
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    if proc.returncode == 2:
        reason = ("COLLECTOR NOT BUILT (Go toolchain or module proxy unavailable), real-collector tests "
                  f"skipped:\n{tail}")
        warnings.warn(reason, pytest.PytestWarning, stacklevel=1)
        pytest.skip(reason)
    if proc.returncode != 0:
        pytest.fail(f"collector/build.sh failed (exit {proc.returncode}):\n{tail}", pytrace=False)
    binary = proc.stdout.strip().splitlines()[-1]
    assert os.access(binary, os.X_OK), f"build.sh printed {binary!r}, which is not executable"
    return binary


def _trixie_binary(package: str) -> str:
    """A Debian trixie package's binary, fetched once into a private cache (never installed)."""
    script = ROOT / "scripts" / "fetch-trixie-package.sh"
    try:
        proc = subprocess.run([str(script), package], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        proc = None
    ok = proc is not None and proc.returncode == 0
    _need(ok, f"could not fetch trixie's {package}: "
          + (proc.stderr.strip()[-500:] if proc is not None else "timed out"))
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def victoriametrics_binary() -> str:
    return _trixie_binary("victoria-metrics")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Debian trixie's docker-compose (validation only; there is no Docker engine)."""
    return _trixie_binary("docker-compose")
