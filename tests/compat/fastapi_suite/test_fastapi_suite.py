"""FastAPI's own test suite, bare and under ``opentelemetry-instrument`` with our distro: no
test that passes bare fails under the distro. A test that fails bare is the environment's,
not ours: it is printed (and warned about), never counted against the distro. The test
requirements are the exact versions in constraints.txt, so the bare run is green.

The suite comes from the source package of the installed FastAPI version and runs in a
cached venv of its own (see suite.py). Both runs go at once (two processes), each over the
whole of FastAPI's ``tests/`` (5,225 tests in 0.165, its native telemetry tests among them)
except the two benchmark folders, which need the codspeed plugin and measure speed, not
behaviour. Seen here: 135 s for both runs together on two cores (longer when the machine
is busy), plus about 75 s the first time to download and install.

Run with ``pytest -m fastapi_suite tests/compat/fastapi_suite``.
"""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest
from support import require

import suite

pytestmark = pytest.mark.fastapi_suite

SELECTION = ["tests", "--ignore=tests/benchmarks", "--ignore=tests/memory_benchmarks"]

# Tests that may pass bare and not under the distro. Tests that need a process where no OpenTelemetry SDK was ever imported. Under
# opentelemetry-instrument the distro and configurator import the SDK at interpreter start,
# before any test runs, so these cannot pass there: they are about the process, not FastAPI.
NEEDS_A_PROCESS_WITHOUT_THE_SDK = {
    # blocks `opentelemetry.sdk` imports in a fresh subprocess, then asserts that none is
    # in sys.modules after using FastAPI: the subprocess inherits opentelemetry-instrument
    # (its sitecustomize is on PYTHONPATH), which loads the SDK before the test body runs
    "tests.test_telemetry.test_integrations::test_api_only_and_no_implicit_sdk_import",
}

RUN_TIMEOUT = 1200  # seconds, for both runs together


@pytest.fixture(scope="module")
def suite_venv():
    version = suite.installed_version()
    assert suite.constraints_fastapi() == version, (
        f"{suite.CONSTRAINTS} is not for the installed FastAPI {version}: update it on purpose")
    try:
        src = suite.source(version)
        env_dir = suite.venv(version, src)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        require(False, f"cannot prepare FastAPI {version}'s test suite: {error}")
    return env_dir, src


def test_no_test_that_passes_bare_fails_under_the_distro(suite_venv, tmp_path):
    env_dir, src = suite_venv
    runs = {mode: suite.start(env_dir, src, SELECTION, mode == "instrumented", tmp_path / mode)
            for mode in ("bare", "instrumented")}
    try:
        for proc in runs.values():
            proc.wait(RUN_TIMEOUT)
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
    logs = {mode: (tmp_path / mode / "log.txt").read_text() for mode in runs}
    probes = {mode: json.loads((tmp_path / mode / "probe.json").read_text()) for mode in runs}
    # each run was what it says: the bare one never loaded us, the other one patched FastAPI
    assert probes["bare"] == {"distro_loaded": False, "fastapi_patched": False}, logs["bare"][-3000:]
    assert probes["instrumented"] == {"distro_loaded": True, "fastapi_patched": True}

    bare = suite.outcomes(tmp_path / "bare" / "junit.xml")
    instrumented = suite.outcomes(tmp_path / "instrumented" / "junit.xml")
    assert len(bare) > 5_000 and set(bare) == set(instrumented)

    result = suite.compare(bare, instrumented, NEEDS_A_PROCESS_WITHOUT_THE_SDK)
    if result.environment or result.excused:
        print(result.report())  # shown with -s, and in the report of a failure
    if result.environment:
        # not the distro's: they fail without it (constraints.txt keeps this list empty)
        warnings.warn(f"FastAPI's suite is not green bare here (the environment's):\n"
                      f"{result.report()}\nlast lines of the bare run:\n{logs['bare'][-3000:]}")
    # a bare run that mostly fails says nothing about the distro
    assert len(result.environment) < len(bare) // 100, logs["bare"][-5000:]
    assert not result.ours, (result.report(), logs["instrumented"][-8000:])
