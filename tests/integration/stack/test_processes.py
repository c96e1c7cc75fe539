"""The process harness (mystocks_otel_dev.stack.processes): what it promises the stack and tests.

Children are stopped when the block ends, even on an exception; a child that exits or never
gets ready fails at once with its log; a pid is only signalled while it is still the process
that was started; the state file lets a later invocation find and stop them.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from support import port_open, require

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Process, ProcessError, Processes, Spec, start_time


def _redis(workdir) -> Spec:
    require(processes.which("redis-server") is not None, "redis-server not installed")
    return processes.redis_server(workdir / "redis")


def test_children_are_stopped_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with Processes(tmp_path) as procs:
            redis = procs.start(_redis(tmp_path))
            assert redis.alive() and port_open("127.0.0.1", redis.port)
            raise RuntimeError("boom")
    assert not redis.alive()
    assert not port_open("127.0.0.1", redis.port)
    assert redis.state == "stopped"


def test_a_child_that_exits_fails_at_once_with_its_log(tmp_path):
    spec = Spec("broken", ["sh", "-c", "echo cannot bind the port >&2; exit 3"], port=processes.free_port())
    started = time.monotonic()
    with Processes(tmp_path) as procs, pytest.raises(ProcessError, match="broken exited: cannot bind the port"):
        procs.start(spec)
    assert time.monotonic() - started < 5
    assert procs.failed


def test_a_child_never_ready_is_stopped_at_the_deadline(tmp_path):
    spec = Spec("mute", ["sleep", "30"], port=processes.free_port(), start_timeout=0.5)
    with Processes(tmp_path) as procs:
        with pytest.raises(ProcessError, match="mute not ready within 0.5 s"):
            procs.start(spec)
        assert not procs["mute"].alive() and procs["mute"].state == "failed"


def test_stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm(tmp_path):
    spec = Spec("stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], stop_timeout=0.5)
    with Processes(tmp_path) as procs:
        proc = procs.start(spec)  # no port, no URL: running is ready
        started = time.monotonic()
        procs.stop("stubborn")
        assert not proc.alive()
        assert time.monotonic() - started < 5


def test_a_recycled_pid_is_never_signalled(tmp_path):
    """The recorded start time must match /proc: a stranger with the same pid is left alone."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = Process("old", ["sleep"], pid=stranger.pid, started=start_time(stranger.pid) - 1)
        assert not record.alive()
        record.stop()
        assert stranger.poll() is None, "the stranger was signalled"
        assert Process("same", ["sleep"], pid=stranger.pid, started=start_time(stranger.pid)).alive()
    finally:
        stranger.kill()
        stranger.wait(5)


def test_state_file_lets_a_later_invocation_stop_them(tmp_path):
    """As `stack up` then `stack down`: detach() leaves them running, attach() finds them."""
    with Processes(tmp_path, state_file=True) as procs:
        redis = procs.start(_redis(tmp_path))
        procs.detach()
    assert redis.alive(), "detached: still running after the block"
    later = Processes.attach(tmp_path)
    assert [(c.name, c.pid, c.started, c.alive()) for c in later] == [("redis", redis.pid, redis.started, True)]
    with later:
        pass
    assert not redis.alive() and not port_open("127.0.0.1", redis.port)
    assert Processes.attach(tmp_path)["redis"].state == "stopped"
    assert Processes.attach(tmp_path / "nothing-here").children == []


def test_a_stopped_child_restarts_by_name_on_its_ports(tmp_path):
    with Processes(tmp_path) as procs:
        redis = procs.start(_redis(tmp_path))
        first = redis.pid
        procs.stop("redis")
        assert not port_open("127.0.0.1", redis.port)
        procs.start("redis")
        assert redis.pid != first and port_open("127.0.0.1", redis.port)


def test_postgres_runs_in_a_private_directory_that_cleanup_removes(tmp_path):
    require(processes.postgres_bindir() is not None, "PostgreSQL binaries not installed")
    import os
    import stat
    from pathlib import Path

    import sqlalchemy

    with Processes(tmp_path) as procs:
        pg = procs.start(processes.postgres_server(database="test"))
        home = Path(pg.data_dir)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        engine = sqlalchemy.create_engine(pg.url)
        conn = engine.connect()  # a connection open at the stop: a fast shutdown ends it
        assert conn.exec_driver_sql("SELECT current_database()").scalar() == "test"
        assert pg.stop_signal == signal.SIGINT
        started = time.monotonic()
        procs.stop(pg.name)
        assert not pg.alive() and time.monotonic() - started < 5
        conn.invalidate()
        engine.dispose()
    assert not home.exists()
    assert os.geteuid() != 0 or pg.user == "postgres"


def test_a_child_sees_only_its_env_when_it_does_not_inherit(tmp_path, monkeypatch):
    monkeypatch.setenv("MYSTOCKS_HARNESS_PROBE", "inherited")
    with Processes(tmp_path) as procs:
        for name, inherit in (("inherits", True), ("clean", False)):
            proc = procs.start(Spec(name, ["/bin/sh", "-c", 'echo "probe=$MYSTOCKS_HARNESS_PROBE own=$OWN"'],
                                    env={"OWN": "yes"}, inherit_env=inherit), wait=False)
            processes.wait_until(lambda p=proc: not p.alive(), 10, f"{name} to finish")
    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text().strip() for name in ("inherits", "clean")}
    assert logs == {"inherits": "probe=inherited own=yes", "clean": "probe= own=yes"}


def test_identity_is_start_time_and_program(tmp_path):
    """A pid whose start time matches but which runs another program (exec after a reuse in
    the same clock tick) is not ours either."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        same = Process("p", ["sleep"], pid=stranger.pid, started=start_time(stranger.pid),
                       exe=processes.executable(stranger.pid))
        assert same.alive()
        other = Process("p", ["redis-server"], pid=stranger.pid, started=start_time(stranger.pid),
                        exe="/usr/bin/redis-server")
        assert not other.alive()
        other.stop()
        assert stranger.poll() is None, "the stranger was signalled"
    finally:
        stranger.kill()
        stranger.wait(5)
