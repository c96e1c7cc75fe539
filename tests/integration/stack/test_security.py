"""The stack on a shared machine (issue 13 row 7): another local user, a real one (``nobody``,
through ``runuser``), cannot log into its PostgreSQL, reload or stop its Prometheus or use an
admin API, silence an alert in its Alertmanager, or delete series in its VictoriaMetrics; the
stack's owner can, with the credentials in the stack's 0600 files.

Each test starts only the part it needs, through the harness and with the stack's own settings
(:data:`runner.PROMETHEUS_FLAGS`, :func:`runner.write_owner_secrets`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from support import require

from mystocks_otel_dev.stack import processes, runner
from mystocks_otel_dev.stack.processes import Processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None
                                and not os.path.exists("/usr/sbin/runuser"),
                                reason="needs root and runuser to act as a second local user (nobody)")

OTHER = "nobody"


def as_other(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``argv`` as another local user, from a folder it may enter."""
    return subprocess.run([processes.which("runuser"), "-u", OTHER, "--", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd="/")


def curl(method: str, url: str, *extra: str, other: bool) -> int:
    """The HTTP status of one request, as ``nobody`` (other=True) or as the owner."""
    require(processes.which("curl") is not None, "curl not installed")
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "--max-time", "10", *extra, url]
    done = as_other(*argv) if other else subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return int(done.stdout.strip() or 0)


def owner_secrets(tmp_path):
    files = runner.write_owner_secrets(tmp_path / "secrets")
    user, password = runner.owner_credentials(tmp_path)
    return files, user, password


def test_owner_files_are_0600_in_a_0700_folder_and_another_user_cannot_read_them(tmp_path):
    files, _, password = owner_secrets(tmp_path)
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    os.chmod(tmp_path, 0o755)  # even with every folder above open, the files stay closed
    for path in files.values():
        done = as_other("cat", str(path))
        assert done.returncode != 0 and password not in done.stdout
    assert password not in (tmp_path / "secrets" / runner.ALERTMANAGER_WEB_CONFIG).read_text()  # a bcrypt hash


def test_postgres_refuses_another_local_user_and_takes_the_owner(tmp_path):
    require(processes.which("psql") is not None, "psql not installed")
    with Processes(tmp_path) as procs:
        pg = procs.start(processes.postgres_server())
        sql = ["-w", "-d", "postgres", "-tAc", "SELECT 1"]
        # TCP, no password: refused (it was trust: superuser, COPY ... FROM PROGRAM).
        done = as_other("psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", *sql)
        assert done.returncode != 0 and "password" in done.stderr, done.stdout + done.stderr
        # A guessed password: refused.
        done = as_other("env", "PGPASSWORD=postgres", "psql", "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", "postgres", *sql)
        assert done.returncode != 0 and "password authentication failed" in done.stderr, done.stderr
        # The unix socket lives in the cluster's private 0700 folder.
        done = as_other("psql", "-h", pg.data_dir, "-p", str(pg.port), "-U", "postgres", *sql)
        assert done.returncode != 0, done.stdout
        # The owner, with the URL the demo gets in DATABASE_URL.
        done = subprocess.run(["psql", pg.url, "-w", "-tAc", "SELECT 1"], capture_output=True, text=True,
                              timeout=30)
        assert done.stdout.strip() == "1", done.stderr
        assert urllib.parse.urlsplit(pg.url).password not in " ".join(pg.argv)  # /proc/<pid>/cmdline is public


def test_prometheus_has_no_lifecycle_or_admin_api(tmp_path, prometheus_binary):
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    with Processes(tmp_path) as procs:
        prom = procs.start(processes.prometheus(config, tmp_path / "data", None, *runner.PROMETHEUS_FLAGS,
                                                binary=prometheus_binary))
        for method, path in (("POST", "/-/reload"), ("POST", "/-/quit"),
                             ("POST", "/api/v1/admin/tsdb/delete_series?match%5B%5D=up"),
                             ("POST", "/api/v1/admin/tsdb/snapshot"),
                             ("POST", "/api/v1/admin/tsdb/clean_tombstones")):
            for other in (True, False):  # off for everyone: the owner reloads with SIGHUP
                code = curl(method, prom.url + path, other=other)
                assert not 200 <= code < 300, f"{method} {path} answered {code}"
        assert prom.ready()


def test_alertmanager_silences_need_the_owner_password(tmp_path, alertmanager_binary):
    files, user, password = owner_secrets(tmp_path)
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    with Processes(tmp_path) as procs:
        am = procs.start(processes.alertmanager(config, tmp_path / "data", binary=alertmanager_binary,
                                                web_config_file=files["web_config"],
                                                auth_file=files["credentials"]))
        silence = json.dumps({"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
                              "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                              "createdBy": "intruder", "comment": "silence every alert"})
        body = ["-H", "Content-Type: application/json", "-d", silence]
        url = f"{am.url}/api/v2/silences"
        assert curl("POST", url, *body, other=True) == 401
        assert curl("POST", url, *body, "-u", f"{user}:guess", other=True) == 401
        assert curl("GET", url, other=True) == 401
        assert curl("GET", f"{am.url}/api/v2/alerts", other=True) == 401
        assert curl("POST", url, *body, "-u", f"{user}:{password}", other=False) == 200
        assert password not in " ".join(am.argv)


def test_victoriametrics_delete_needs_the_owner_key(tmp_path):
    try:
        binary = runner.victoriametrics_binary()
    except (runner.StackError, OSError, subprocess.SubprocessError) as error:
        require(False, f"VictoriaMetrics not available: {error}")
    files, _, password = owner_secrets(tmp_path)
    with Processes(tmp_path) as procs:
        vm = procs.start(processes.victoriametrics(binary, tmp_path / "vm", auth_key_file=files["password"]))
        base = vm.url
        # Writes and queries stay open to local clients (the Collector, Prometheus' remote_write).
        assert curl("POST", f"{base}/api/v1/import/prometheus", "--data-binary", "victim_series 1\n",
                    other=True) == 204
        series = f"{base}/api/v1/series?match%5B%5D=victim_series"

        def count() -> int:
            curl("GET", f"{base}/internal/force_flush", other=False)
            out = subprocess.run(["curl", "-s", series], capture_output=True, text=True, timeout=10).stdout
            return len(json.loads(out)["data"])

        deadline = time.monotonic() + 20
        while count() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count() == 1
        delete = f"{base}/api/v1/admin/tsdb/delete_series?match%5B%5D=victim_series"
        assert curl("POST", delete, other=True) == 401
        assert curl("POST", delete + "&authKey=guess", other=True) == 401
        for locked in ("/snapshot/create", "/internal/force_merge", "/internal/resetRollupResultCache",
                       "/debug/pprof/heap", "/flags"):
            assert curl("GET", base + locked, other=True) == 401, locked
        assert count() == 1, "nobody deleted the series"
        assert curl("POST", f"{delete}&authKey={password}", other=False) == 204
        assert count() == 0
        assert password not in " ".join(vm.argv)


def test_another_user_cannot_gossip_a_silence_into_the_alertmanager_cluster(tmp_path, alertmanager_binary):
    """The HTTP API's password alone is not enough: a peer that joins the gossip port shares
    its silences. The stack's peers speak mutual TLS with a key only the owner can read."""
    files, _, _ = owner_secrets(tmp_path)
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    ports = {peer: processes.free_port() for peer in ("a", "b")}
    intruder_dir = Path(tempfile.mkdtemp(prefix="intruder-"))
    shutil.chown(intruder_dir, OTHER)
    intruder = None
    with Processes(tmp_path) as procs:
        peers = [procs.start(processes.alertmanager(
            config, tmp_path / f"am-{peer}", name=f"am-{peer}", binary=alertmanager_binary,
            cluster_port=ports[peer], peers=[ports[other]], web_config_file=files["web_config"],
            auth_file=files["credentials"], cluster_tls_file=files["cluster_tls"]))
            for peer, other in (("a", "b"), ("b", "a"))]

        def seen() -> list[int]:
            return [len(runner.http_json(f"{p.url}/api/v2/status", auth_file=p.auth_file)["cluster"]["peers"])
                    for p in peers]

        processes.wait_until(lambda: seen() == [2, 2], 30, "the two peers to see each other", 0.2)
        try:
            (intruder_dir / "am.yml").write_text(config.read_text())
            # Their own copy of the program: the built one lives in root's 0700 home.
            own_binary = shutil.copy(alertmanager_binary, intruder_dir / "alertmanager")
            http, gossip = processes.free_port(), processes.free_port()
            intruder = subprocess.Popen(
                [processes.which("runuser"), "-u", OTHER, "--", own_binary,
                 f"--config.file={intruder_dir / 'am.yml'}", f"--storage.path={intruder_dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{http}", f"--cluster.listen-address=127.0.0.1:{gossip}",
                 f"--cluster.advertise-address=127.0.0.1:{gossip}", f"--cluster.peer=127.0.0.1:{ports['a']}",
                 "--cluster.gossip-interval=50ms", "--cluster.pushpull-interval=1s"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
            processes.wait_until(lambda: processes.http_ok(f"http://127.0.0.1:{http}/-/ready"), 30,
                                 "the intruder's own Alertmanager")
            silence = json.dumps({"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
                                  "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                                  "createdBy": "intruder", "comment": "silence every alert"})
            assert curl("POST", f"http://127.0.0.1:{http}/api/v2/silences", "-H", "Content-Type: application/json",
                        "-d", silence, other=True) == 200
            time.sleep(5)  # gossip is every 200 ms, push-pull every 1 s on the intruder's side
            for peer in peers:
                silences = runner.http_json(f"{peer.url}/api/v2/silences", auth_file=peer.auth_file)
                assert not [s for s in silences if s["createdBy"] == "intruder"], f"{peer.name} took it"
            assert seen() == [2, 2], "the intruder joined the cluster"
        finally:
            if intruder is not None:
                intruder.terminate()
                intruder.wait(10)
            shutil.rmtree(intruder_dir, ignore_errors=True)


def test_redis_needs_the_password(tmp_path):
    require(processes.which("redis-server") is not None and processes.which("redis-cli") is not None,
            "redis-server/redis-cli not installed")
    password = "owner-" + os.urandom(8).hex()
    with Processes(tmp_path) as procs:
        redis = procs.start(processes.redis_server(tmp_path / "redis", password=password))
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port)]
        for command in (["SET", "k", "forged"], ["FLUSHALL"], ["SHUTDOWN", "NOSAVE"], ["CONFIG", "GET", "dir"]):
            done = as_other(*cli, *command)
            assert "NOAUTH" in done.stdout + done.stderr, (command, done.stdout, done.stderr)
        assert redis.alive()
        done = subprocess.run([*cli, "--no-auth-warning", "-a", password, "PING"], capture_output=True,
                              text=True, timeout=10)
        assert done.stdout.strip() == "PONG"
        assert password not in " ".join(redis.argv) and password in redis.url
        assert stat.S_IMODE((tmp_path / "redis" / "redis.conf").stat().st_mode) == 0o600
