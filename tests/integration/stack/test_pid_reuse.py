"""A stack part dies and its pid goes to an unrelated process (issue 13 row 8).

The pid is reused for real, through /proc/sys/kernel/ns_last_pid (root only; skipped with the
reason otherwise). ``stack status`` then shows the part down, ``stack down`` leaves the
stranger alone, and ``stack up`` starts the dead part again instead of answering "already
running".
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mystocks_otel_dev.stack import processes, runner
from mystocks_otel_dev.stack.processes import Processes, Spec

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def spawn_with_pid(pid: int, argv: list[str], attempts: int = 500) -> subprocess.Popen:
    """An unrelated process (its own session, as a stack part) that gets exactly ``pid``."""
    if os.geteuid() != 0:
        pytest.skip("forcing a pid needs root (writes /proc/sys/kernel/ns_last_pid)")
    for _ in range(attempts):
        try:
            NS_LAST_PID.write_text(str(pid - 1))
        except OSError as error:
            pytest.skip(f"cannot write {NS_LAST_PID}: {error}")
        child = subprocess.Popen(argv, start_new_session=True)
        if child.pid == pid:
            return child
        child.kill()
        child.wait(5)
    pytest.fail(f"pid {pid} never came back in {attempts} attempts (a busy machine?)")


def stack_of_two(workdir: Path):
    """A recorded stack (state.json) of two running parts, as `stack up` leaves it."""
    with Processes(workdir, state_file=True) as procs:
        procs.start(Spec("keeper", ["sleep", "300"]))
        victim = procs.start(Spec("victim", ["sleep", "300"]))
        procs.detach()
    return victim


def kill_and_reuse(victim) -> subprocess.Popen:
    time.sleep(0.1)  # as in life: the part ran a while before it died
    os.killpg(victim.pid, signal.SIGKILL)
    processes._CHILDREN.pop(victim.pid).wait(5)
    # An unrelated process, the same program, with the dead part's pid.
    return spawn_with_pid(victim.pid, ["sleep", "300"])


def state(capsys, workdir: Path) -> dict[str, str]:
    capsys.readouterr()
    runner.status(workdir)
    rows = capsys.readouterr().out.splitlines()[1:]
    return {row.split()[0]: row.split()[1] for row in rows if row and not row.startswith("Alertmanager")}


def test_status_shows_a_reused_pid_down_and_down_leaves_the_stranger_alive(tmp_path, capsys):
    victim = stack_of_two(tmp_path)
    stranger = kill_and_reuse(victim)
    try:
        assert stranger.pid == victim.pid
        assert state(capsys, tmp_path) == {"keeper": "up", "victim": "down"}
        assert runner.status(tmp_path) == 1
        assert runner.down(tmp_path) == 0
        time.sleep(0.5)
        assert stranger.poll() is None, "stack down signalled an unrelated process"
    finally:
        stranger.kill()
        stranger.wait(5)
        Processes.attach(tmp_path).stop_all()


def test_up_restarts_a_dead_part_and_leaves_the_stranger_alone(tmp_path, capsys):
    victim = stack_of_two(tmp_path)
    stranger = kill_and_reuse(victim)
    try:
        keeper_pid = Processes.attach(tmp_path)["keeper"].pid
        assert runner.up(tmp_path) == 0
        out = capsys.readouterr().out
        assert "already running" not in out and "victim" in out
        after = Processes.attach(tmp_path)
        assert after["victim"].alive() and after["victim"].pid != stranger.pid
        assert after["keeper"].pid == keeper_pid, "a live part is not restarted"
        assert state(capsys, tmp_path) == {"keeper": "up", "victim": "up"}
        assert runner.up(tmp_path) == 0 and "already running" in capsys.readouterr().out
        assert runner.down(tmp_path) == 0
        assert stranger.poll() is None, "the stranger was signalled"
        assert not after["victim"].alive() and not after["keeper"].alive()
    finally:
        stranger.kill()
        stranger.wait(5)
        Processes.attach(tmp_path).stop_all()
