"""`stack up` shows the Collector build's progress as it comes (build.sh's stderr lines,
prefixed), says what the first build costs before it starts, and still takes the binary's
path from build.sh's stdout. A fake checkout (MYSTOCKS_OTEL_ROOT) holds a fake build.sh."""

from __future__ import annotations

import stat
import threading
import time

import pytest

from mystocks_otel_dev.stack import runner

FAKE_BUILD = r"""#!/usr/bin/env bash
# a stand-in for collector/build.sh: the same interface (stdout: the path; stderr: progress)
set -euo pipefail
binary={binary}
if [[ ${{1:-}} == --path ]] || [[ -x $binary ]]; then echo "$binary"; exit 0; fi
echo "collector/build.sh: [1/5] toolchain" >&2
echo "collector/build.sh: still compiling, 15 s (3 of 9 packages compiled)" >&2
sleep {pause}
echo "collector/build.sh: built in 2 s: otelcol version fake" >&2
{failure}
printf '#!/bin/sh\n' >"$binary" && chmod +x "$binary"
echo "$binary"
"""


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    for marker in runner.ROOT_MARKERS:
        (root / marker).parent.mkdir(parents=True, exist_ok=True)
        (root / marker).touch()
    monkeypatch.setenv("MYSTOCKS_OTEL_ROOT", str(root))
    cache = tmp_path / "cache"
    cache.mkdir()

    def write(pause: float = 0, failure: str = ""):
        script = root / "collector" / "build.sh"
        script.write_text(FAKE_BUILD.format(binary=cache / "otelcol-key", pause=pause, failure=failure))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return cache / "otelcol-key"

    return write


def test_the_first_build_says_its_cost_then_streams_its_progress(checkout, capsys):
    binary = checkout()
    assert runner.collector_binary() == str(binary)
    out = capsys.readouterr().out.splitlines()
    assert "downloads ~250 Go modules" in out[0] and "4-7 minutes on 2 cores" in out[0]
    assert f"{binary.parent / 'collector-build'}" in out[0]
    assert out[1:] == ["  collector: [1/5] toolchain",
                       "  collector: still compiling, 15 s (3 of 9 packages compiled)",
                       "  collector: built in 2 s: otelcol version fake"]


def test_a_cached_binary_is_quiet(checkout, capsys):
    binary = checkout()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert runner.collector_binary() == str(binary)
    assert capsys.readouterr().out == ""


def test_progress_lines_show_while_the_build_runs_not_at_its_end(checkout, monkeypatch):
    checkout(pause=3)
    seen: list[tuple[float, str]] = []
    monkeypatch.setattr(runner, "say", lambda message: seen.append((time.monotonic(), message)))
    started = time.monotonic()
    done = []
    worker = threading.Thread(target=lambda: done.append(runner.collector_binary()))
    worker.start()
    worker.join(30)
    finished = time.monotonic()
    assert done, "collector_binary did not return"
    compiling = next(at for at, message in seen if "still compiling" in message)
    assert compiling - started < 2.5 and finished - compiling > 2  # shown before the pause ended


def test_a_failed_build_names_its_last_line(checkout, capsys):
    checkout(failure='echo "collector/build.sh: compiling failed (see above)" >&2; exit 1')
    with pytest.raises(runner.StackError, match=r"build.sh  failed: collector/build.sh: compiling failed"):
        runner.collector_binary()
    assert "  collector: compiling failed (see above)" in capsys.readouterr().out
