"""``mystocks-otel stack up|status|down`` on this machine, and the notification sink.

The live test runs the real command: every part (PostgreSQL, Redis, the demo with several
workers, VictoriaMetrics, the Collector, two clustered Alertmanager peers, two Prometheus
replicas) starts on loopback, and after ``down`` nothing it started is left listening.
"""

from __future__ import annotations

import json
import smtplib
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from support import wait_until

from mystocks_otel_dev.stack import processes, runner
from mystocks_otel_dev.stack import sink as sink_module
from mystocks_otel_dev.stack.processes import Processes
from mystocks_otel_dev.stack.configs import LOCAL_DIFFERENCES, prometheus_config

CLI = [sys.executable, "-m", "mystocks_otel.cli"]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def run_cli(*args: str, timeout: float = 1900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


@pytest.mark.live
def test_stack_up_status_down(tmp_path, alertmanager_binary, prometheus_binary):
    workdir = tmp_path / "stack"
    try:
        result = run_cli("stack", "up", "--dir", str(workdir))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        state = json.loads((workdir / "state.json").read_text())
        parts = {c["name"]: c for c in state["components"]}
        assert set(parts) == {"postgresql", "redis", "sink", "victoriametrics", "otel-collector",
                              "demo", "alertmanager-a", "alertmanager-b", "prometheus-a", "prometheus-b"}
        # The closing table names every part with its URL and state.
        for name, part in parts.items():
            assert any(line.startswith(name) and " up " in line and part["url"] in line
                       for line in result.stdout.splitlines()), (name, result.stdout)

        # Two Prometheus replicas with distinct replica labels, each sending to both peers.
        replicas = set()
        for name in ("prometheus-a", "prometheus-b"):
            config = get_json(f"{parts[name]['url']}/api/v1/status/config")["data"]["yaml"]
            replicas.add(next(line.split(":")[1].strip() for line in config.splitlines()
                              if line.strip().startswith("replica:")))
            targets = wait_until(lambda n=name: [t for t in get_json(
                f"{parts[n]['url']}/api/v1/targets")["data"]["activeTargets"] if t["health"] == "up"]
                if len([t for t in get_json(f"{parts[n]['url']}/api/v1/targets")["data"]["activeTargets"]
                        if t["health"] == "up"]) >= 6 else None, 60, f"{name} scraping every target")
            assert {t["labels"]["job"] for t in targets} >= {
                "mystocks-api", "otel-collector", "prometheus", "alertmanager"}
            am = get_json(f"{parts[name]['url']}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
            assert len(am) == 2
        assert replicas == {"a", "b"}

        # Two Alertmanager peers in one cluster, behind the owner's basic auth (Prometheus sends
        # it: both replicas scrape them up, above).
        for name in ("alertmanager-a", "alertmanager-b"):
            with pytest.raises(urllib.error.HTTPError, match="401"):
                get_json(f"{parts[name]['url']}/api/v2/status")
            status = runner.http_json(f"{parts[name]['url']}/api/v2/status", auth_file=parts[name]["auth_file"])
            assert status["cluster"]["status"] == "ready" and len(status["cluster"]["peers"]) == 2

        # The stack's folder and its secrets are the owner's alone; the demo reaches PostgreSQL
        # and Redis with the generated passwords.
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((workdir / "state.json").stat().st_mode) == 0o600
        for path in (workdir / "secrets").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        demo = parts["demo"]["url"].removesuffix("/docs")
        assert wait_until(lambda: (lambda c: c["database"] is True and c["cache"] is True)(
            get_json(f"{demo}/health")["components"]), 30, "the demo's database and cache probes")
        # Its fault switches need the owner's token.
        token = (workdir / "secrets" / runner.DEMO_ADMIN_TOKEN_FILE).read_text().strip()
        for method in ("GET", "POST", "DELETE"):
            request = urllib.request.Request(f"{demo}/admin/faults", method=method, data=b"{}" if method == "POST"
                                             else None, headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError, match="401"):
                urllib.request.urlopen(request, timeout=5)
            request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200

        status = run_cli("stack", "status", "--dir", str(workdir), timeout=60)
        assert status.returncode == 0, status.stdout
        assert "sees 2 peers" in status.stdout
    finally:
        down = run_cli("stack", "down", "--dir", str(workdir), timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    ports = [p for part in parts.values() for p in [part["port"], *part["ports"]] if p]
    assert len(ports) >= 14
    assert [p for p in ports if listening(p)] == []
    assert not workdir.exists()  # nothing failed: nothing kept


def test_status_and_down_without_a_stack(tmp_path):
    assert run_cli("stack", "status", "--dir", str(tmp_path / "none"), timeout=60).returncode == 1
    assert run_cli("stack", "down", "--dir", str(tmp_path / "none"), timeout=60).returncode == 0


def test_local_config_changes_only_targets_paths_and_replica():
    base = {"global": {"scrape_interval": "15s", "external_labels": {"stack": "mystocks"}},
            "rule_files": ["/etc/prometheus/rules/*.yml"],
            "scrape_configs": [{"job_name": "mystocks-api", "metrics_path": "/metrics",
                                "static_configs": [{"targets": ["app:8000"]}]}],
            "remote_write": [{"url": "http://victoriametrics:8428/api/v1/write",
                              "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}]}]}
    local = prometheus_config(base, replica="b", targets={"mystocks-api": ["127.0.0.1:1"]},
                              rule_files=["/repo/alerts/rules/*.yml"], alertmanagers=["127.0.0.1:2"],
                              remote_write_url="http://127.0.0.1:3/api/v1/write")
    assert local["global"] == {"scrape_interval": "15s",
                               "external_labels": {"stack": "mystocks", "replica": "b"}}
    assert local["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert local["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]
    assert local["remote_write"][0]["write_relabel_configs"] == base["remote_write"][0]["write_relabel_configs"]
    assert local["remote_write"][0]["url"] == "http://127.0.0.1:3/api/v1/write"
    assert base["rule_files"] == ["/etc/prometheus/rules/*.yml"]  # the compose file is untouched
    assert {part for part, _, _ in LOCAL_DIFFERENCES} == {"Prometheus", "Collector", "Alertmanager"}


def test_sink_names_the_receiver_of_every_channel(tmp_path):
    record = tmp_path / "n.jsonl"
    with Processes(tmp_path / "procs") as procs:
        proc = procs.start(processes.sink(record))
        base, smtp_port = proc.url.rstrip("/"), proc.ports[0]

        def post(path: str, body: dict) -> int:
            request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status

        webhook = {"status": "firing", "alerts": [{"labels": {"alertname": "RedisDown"}}]}
        assert post("/slack/slack-critical", {"attachments": [{"title": "[FIRING:1] RedisDown"}]}) == 200
        assert post("/pagerduty", {"routing_key": sink_module.PAGERDUTY_KEYS["pagerduty-service"],
                                   "event_action": "trigger", "payload": {"summary": "RedisDown"}}) == 200
        assert post("/webhook", webhook) == 200
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
            smtp.sendmail("am@sink.invalid", ["platform@sink.invalid"],
                          "Subject: [MyStocks] [FIRING:1] CRITICAL RedisDown\r\n\r\nbody\r\n")
        items = wait_until(lambda: (lambda d: d if len(d) == 4 else None)(
            get_json(f"{base}/api/notifications")), 10, "four notifications")
        assert [(i["receiver"], i["status"]) for i in items] == [
            ("slack-critical", "firing"), ("pagerduty-service", "firing"), ("webhook", "firing"),
            ("email-platform", "firing")]
        assert all(any("RedisDown" in n for n in i["alertnames"]) for i in items)
        assert len(record.read_text().splitlines()) == 4  # kept on disk too
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert "slack-critical" in page and "email-platform" in page
        # Malformed input: a 4xx, never a crash.
        bad = urllib.request.Request(base + "/webhook", data=b"x", method="POST",
                                     headers={"Content-Length": "-5"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=5)
        assert error.value.code == 400
        assert proc.alive()
        # The HTTP receivers' headers are kept (the app webhook's bearer token is checked).
        assert all("headers" in i for i in items if i["channel"].startswith("http"))


def test_sink_leaves_socketserver_defaults_alone(tmp_path):
    """The sink's SMTP server reuses its address through its own class, not socketserver's."""
    import socketserver

    server = sink_module.smtp_server(sink_module.Record(tmp_path / "n.jsonl"), 0)
    server.server_close()
    assert server.allow_reuse_address is True
    assert socketserver.ThreadingTCPServer.allow_reuse_address is False
