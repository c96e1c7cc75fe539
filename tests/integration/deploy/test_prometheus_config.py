"""prometheus/prometheus.yml: promtool accepts it, with and without the real rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from mystocks_otel_mixin.config import ALERTMANAGER_JOB, APP_JOB, COLLECTOR_JOB, PROMETHEUS_JOB

RULES_MOUNT = "/etc/prometheus/rules/*.yml"  # where docker-compose.yml mounts alerts/rules


def _check(promtool: str, config: dict, tmp_path, rule_files=()) -> subprocess.CompletedProcess:
    """promtool check config on a copy whose rule glob points at a temp dir.

    promtool resolves rule_files on this machine, where /etc/prometheus/rules is not
    the repository's alerts/rules; so the copy gets its own rules dir with the given files.
    """
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in rule_files:
        shutil.copy(path, rules / path.name)
    assert config["rule_files"] == [RULES_MOUNT]
    copy = dict(config, rule_files=[str(rules / "*.yml")])
    target = tmp_path / "prometheus.yml"
    target.write_text(yaml.safe_dump(copy))
    return subprocess.run([promtool, "check", "config", str(target)], capture_output=True,
                          text=True, timeout=60)


def test_promtool_accepts_the_config(promtool, prometheus_config, tmp_path):
    proc = _check(promtool, prometheus_config, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_accepts_the_config_with_the_real_rules(promtool, prometheus_config, root,
                                                         tmp_path, compose):
    # compose mounts alerts/rules at the glob's directory: check them as Prometheus will.
    assert "./alerts/rules:/etc/prometheus/rules:ro" in compose["services"]["prometheus"]["volumes"]
    rule_files = sorted((root / "alerts" / "rules").glob("*.yml"))
    if not rule_files:
        pytest.skip("alerts/rules/*.yml not written yet")
    proc = _check(promtool, prometheus_config, tmp_path, rule_files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in rule_files:
        assert path.name in proc.stdout, f"promtool did not check {path.name}"


def test_promtool_rejects_a_broken_config(promtool, prometheus_config, tmp_path):
    # Proof the check can fail: two jobs with one name.
    jobs = prometheus_config["scrape_configs"]
    proc = _check(promtool, dict(prometheus_config, scrape_configs=jobs + jobs[:1]), tmp_path)
    assert proc.returncode != 0 and "multiple scrape configs" in proc.stdout + proc.stderr


def test_a_broken_rule_file_fails_the_config_check(promtool, prometheus_config, tmp_path):
    # Proof the real-rules check above reads the rule files it is given.
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: rate(\n")
    proc = _check(promtool, prometheus_config, tmp_path, [bad])
    assert proc.returncode != 0 and "bad.yml" in proc.stdout + proc.stderr


def test_job_names_match_the_mixin(prometheus_config):
    jobs = {j["job_name"]: j for j in prometheus_config["scrape_configs"]}
    assert APP_JOB == "mystocks-api" and COLLECTOR_JOB == "otel-collector"
    # The meta-monitoring jobs the monitoring-of-the-monitoring rules select on.
    assert {APP_JOB, COLLECTOR_JOB, PROMETHEUS_JOB, ALERTMANAGER_JOB} <= set(jobs)
    assert jobs[PROMETHEUS_JOB]["static_configs"] == [{"targets": ["prometheus:9090", "prometheus-b:9090"]}]
    assert jobs[ALERTMANAGER_JOB]["static_configs"] == [
        {"targets": ["alertmanager:9093", "alertmanager-b:9093"]}]
    assert jobs[APP_JOB].get("metrics_path", "/metrics") == "/metrics"
    assert jobs[APP_JOB]["static_configs"] == [{"targets": ["app:8000"]}]


def test_scrape_and_evaluation_every_15s(prometheus_config):
    glob = prometheus_config["global"]
    assert glob["scrape_interval"] == "15s" and glob["evaluation_interval"] == "15s"
    for job in prometheus_config["scrape_configs"]:  # no job quietly overrides it
        assert job.get("scrape_interval", "15s") == "15s", job["job_name"]


def test_alerts_go_to_both_clustered_alertmanager_peers(prometheus_config, compose):
    targets = [t for am in prometheus_config["alerting"]["alertmanagers"]
               for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093", "alertmanager-b:9093"]
    services = compose["services"]
    assert "127.0.0.1:9093:9093" in services["alertmanager"]["ports"]
    assert "127.0.0.1:9095:9093" in services["alertmanager-b"]["ports"]
    # Each peer gossips with the other (issue 9's production topology).
    assert "--cluster.listen-address=0.0.0.0:9094" in services["alertmanager"]["command"]
    assert "--cluster.peer=alertmanager-b:9094" in services["alertmanager"]["command"]
    assert "--cluster.listen-address=0.0.0.0:9094" in services["alertmanager-b"]["command"]
    assert "--cluster.peer=alertmanager:9094" in services["alertmanager-b"]["command"]


def test_compose_runs_the_prometheus_pair_with_distinct_replica_labels(prometheus_config, compose):
    services = compose["services"]
    assert prometheus_config["global"]["external_labels"]["replica"] == "${REPLICA}"
    replicas = {services[name]["environment"]["REPLICA"] for name in ("prometheus", "prometheus-b")}
    assert replicas == {"a", "b"}
    same = {k: v for k, v in services["prometheus"].items() if k not in ("environment", "volumes", "ports", "command")}
    assert same == {k: v for k, v in services["prometheus-b"].items()
                    if k not in ("environment", "volumes", "ports", "command")}
    flags = lambda name: [f for f in services[name]["command"] if not f.startswith("--web.external-url")]  # noqa: E731
    assert flags("prometheus") == flags("prometheus-b"), "the replicas run the same flags"
    assert services["prometheus"]["volumes"][:2] == services["prometheus-b"]["volumes"][:2]  # config, rules


def test_compose_prometheus_keeps_exemplars(compose):
    """Issue 7: the latency panels ask for exemplars; Prometheus stores them only with this flag
    (2.x and 3.x alike), from the OpenMetrics scrapes it prefers by default."""
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]
