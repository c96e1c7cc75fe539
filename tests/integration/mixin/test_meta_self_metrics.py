"""Row 13 (issue 15) against the real binaries: the self-metrics the meta alerts read exist in
Prometheus 3.16 and Alertmanager 0.35 as built from their modules, and the cluster-split rule
reads a real two-peer cluster right: whole, it is silent; with one peer dead, the survivor
sees one member of one Alertmanager up, which is MonitoringTargetDown's case, not a split."""

from __future__ import annotations

import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, wait_until

import live_stack  # noqa: E402
import promql_ast  # noqa: E402

from mystocks_otel_mixin import config, rules  # noqa: E402

ROOT = promql_ast.ROOT


def _meta_self_metrics() -> set[str]:
    """prometheus_* and alertmanager_* names the meta alerts read."""
    text = rules.generate(config.DEFAULT)[rules.ALERTS_FILE]
    names = set()
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            if rule.get("labels", {}).get("category") == "meta":
                names |= promql_ast.metric_names(promql_ast.parse(rule["expr"]))
    return {n for n in names if n.startswith(("prometheus_", "alertmanager_"))}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _split_rule() -> str:
    text = rules.generate(config.DEFAULT)[rules.ALERTS_FILE]
    return next(r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]
                if r.get("alert") == "AlertmanagerClusterSplit")


@pytest.mark.live
def test_meta_self_metrics_exist_and_the_split_rule_reads_a_real_cluster(tmp_path, prometheus_binary,
                                                                          alertmanager_binary):
    from mystocks_otel_dev.stack import processes

    wanted = _meta_self_metrics()
    assert {"alertmanager_cluster_members", "prometheus_config_last_reload_successful",
            "alertmanager_config_last_reload_successful"} <= wanted
    (tmp_path / "am.yml").write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    web, gossip = [free_port(), free_port()], [free_port(), free_port()]
    with processes.Processes(tmp_path / "am") as procs:
        for i in range(2):
            procs.start(processes.alertmanager(tmp_path / "am.yml", tmp_path / f"am-{i}", web[i], name=f"am-{i}",
                                               cluster_port=gossip[i], peers=[gossip[1 - i]],
                                               binary=alertmanager_binary))
        targets = [f"127.0.0.1:{p}" for p in web]
        prom_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / rel) for rel in rules.RULE_FILES],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": targets}]}]},
            "scrape_configs": [{"job_name": config.ALERTMANAGER_JOB, "static_configs": [{"targets": targets}]}],
        }
        with live_stack.prometheus(prometheus_binary, prom_config, tmp_path / "prom") as base:
            def result(expr: str) -> list:
                return live_stack.query(base, expr)["data"]["result"]

            wait_until(lambda: len(result(f'alertmanager_cluster_members{{job="{config.ALERTMANAGER_JOB}"}} == 2')) == 2,
                       60, "both Alertmanagers see a cluster of two")
            exposition = _get(f"{base}/metrics")
            own = {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}
            names = own | {r["metric"]["__name__"] for r in result('count by (__name__) ({__name__=~"alertmanager_.+"})')}
            assert not wanted - names, f"the meta alerts read series the binaries do not export: {wanted - names}"
            assert "\nprometheus_config_last_reload_successful 1\n" in exposition
            assert len(result("alertmanager_config_last_reload_successful == 1")) == 2
            # The split rule's condition, whole cluster: nothing.
            assert result(_split_rule()) == []

            procs.stop("am-1")
            wait_until(lambda: result(f'alertmanager_cluster_members{{instance="{targets[0]}"}} == 1')
                       and result(f'up{{instance="{targets[1]}"}} == 0'), 90, "am-0 alone, am-1 down")
            # A dead peer is not a split: the survivor sees one member of one Alertmanager up.
            now = ("alertmanager_cluster_members < on (job) group_left () "
                   f'count by (job) (up{{job="{config.ALERTMANAGER_JOB}"}} == 1)')
            assert result(now) == []
