"""The long-term store: "15 days raw, 1 year aggregated" (docs/LONG_TERM_STORE.md).

Prometheus remote-writes the recording-rule series, and only those, to VictoriaMetrics, which
keeps them a year. The live tests run the repository's own remote_write block (its allow-list
and its replica handling) on a real Prometheus 3.16 (built from its Go module) with the real rule files, scraping the
synthetic catalog exporter, into a real VictoriaMetrics (Debian trixie's package), as an HA
pair of replicas the way `mystocks-otel stack` and issue 9's production topology run it.
"""

from __future__ import annotations

import copy
import re
import time
import urllib.request

import pytest
from support import wait_until

import live_stack
import promql_ast  # noqa: E402

from mystocks_otel_mixin import config  # noqa: E402

#: The raw series the synthetic exporter serves: Prometheus has them, the store must not.
RAW = "http_server_request_duration_seconds_count"
#: A series every SLO row of the dashboard reads (one per SLO and job).
RECORDED = config.slo_error_ratio_record("5m")
REPLICAS = ("a", "b")


def _remote_write(prometheus_config: dict) -> dict:
    writes = prometheus_config["remote_write"]
    assert len(writes) == 1, "one store"
    return writes[0]


def _allow_list(prometheus_config: dict) -> re.Pattern:
    keep = [r for r in _remote_write(prometheus_config)["write_relabel_configs"] if r.get("action") == "keep"]
    assert len(keep) == 1 and keep[0]["source_labels"] == ["__name__"], keep
    return re.compile(keep[0]["regex"])  # Prometheus anchors relabel regexes: use fullmatch


# -- the config -----------------------------------------------------------------------------------
def test_remote_write_goes_to_compose_victoriametrics(prometheus_config, compose):
    write = _remote_write(prometheus_config)
    assert write["url"] == "http://victoriametrics:8428/api/v1/write"
    vm = compose["services"]["victoriametrics"]["command"]
    assert "-retentionPeriod=1y" in vm and "-httpListenAddr=:8428" in vm
    # The HA pair's replicas write the same series (replica dropped); the store keeps one sample
    # per evaluation interval of them.
    assert f"-dedup.minScrapeInterval={prometheus_config['global']['evaluation_interval']}" in vm
    prom = compose["services"]["prometheus"]["command"]
    assert "--storage.tsdb.retention.time=15d" in prom


def test_allow_list_keeps_every_recording_rule_and_no_raw_series(prometheus_config):
    allow = _allow_list(prometheus_config)
    recorded = promql_ast.recorded_names()
    if not recorded:
        pytest.skip("alerts/rules/ has no rule files yet")
    dropped = sorted(name for name in recorded if not allow.fullmatch(name))
    assert not dropped, f"recording rules the store would never receive: {dropped}"
    for raw in (RAW, "up", "ALERTS", "target_info", "mystocks_cache_hits_total", "otelcol_exporter_sent_metric_points"):
        assert not allow.fullmatch(raw), raw


def test_replica_label_is_dropped_on_write_and_on_alerts(prometheus_config):
    drop = {"action": "labeldrop", "regex": "replica"}
    assert drop in _remote_write(prometheus_config)["write_relabel_configs"]
    assert drop in prometheus_config["alerting"]["alert_relabel_configs"]


# -- live: a real Prometheus pair into a real VictoriaMetrics ------------------------------------
def _replica_config(base: dict, replica: str, exporter_port: int, vm: str) -> dict:
    """The repository's prometheus.yml with the test's target, rules and store address only:
    global intervals of 1 s, and the remote_write block as committed (URL aside)."""
    cfg = copy.deepcopy(base)
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg["global"].setdefault("external_labels", {})["replica"] = replica
    cfg["rule_files"] = [str(p) for p in promql_ast.RULE_FILES]
    cfg["scrape_configs"] = [{"job_name": config.APP_JOB,
                              "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}]
    cfg.pop("alerting", None)
    write = _remote_write(cfg)
    write["url"] = f"{vm}/api/v1/write"
    # Send within a second instead of the default 5 s batch deadline.
    write["queue_config"] = {"batch_send_deadline": "1s"}
    return cfg


@pytest.fixture(scope="module")
def pair(prometheus_binary, victoriametrics_binary, prometheus_config, compose, tmp_path_factory):
    """Two Prometheus replicas (replica=a, b) remote-writing to one VictoriaMetrics run with
    compose's flags; yields (VictoriaMetrics URL, replica URLs)."""
    if not promql_ast.RULE_FILES:
        pytest.skip("alerts/rules/ has no rule files yet")
    work = tmp_path_factory.mktemp("lts")
    flags = [f for f in compose["services"]["victoriametrics"]["command"]
             if not f.startswith(("-storageDataPath", "-httpListenAddr", "-dedup.minScrapeInterval"))]
    # The test evaluates every second; the store's dedup interval follows (compose: 15 s for 15 s).
    with live_stack.serve() as port, \
            live_stack.victoriametrics(victoriametrics_binary, work / "vm", *flags,
                                       "-dedup.minScrapeInterval=1s") as vm:
        with live_stack.prometheus(prometheus_binary, _replica_config(prometheus_config, "a", port, vm),
                                   work / "a") as a, \
                live_stack.prometheus(prometheus_binary, _replica_config(prometheus_config, "b", port, vm),
                                      work / "b") as b:
            for base in (a, b):
                live_stack.wait_for_scrapes(base, config.APP_JOB)
            # Both replicas have written the aggregate at least once.
            wait_until(lambda: live_stack.export(vm, RECORDED) and _written(a) > 0 and _written(b) > 0,
                       30, "both replicas writing to the store")
            yield vm, (a, b)


def _written(prometheus: str) -> float:
    """Samples the replica has sent to the store (its own remote-write counter on /metrics)."""
    text = urllib.request.urlopen(f"{prometheus}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_remote_storage_samples_total{"))


@pytest.mark.live
def test_aggregates_reach_the_store_and_raw_series_do_not(pair):
    vm, (a, _) = pair
    recorded = live_stack.export(vm, f'{{__name__="{RECORDED}"}}')
    assert {s["metric"]["slo"] for s in recorded} >= {"api-availability", "api-latency"}
    assert {s["metric"]["job"] for s in recorded} == {config.APP_JOB}
    # Prometheus has the raw series (so it was offered to remote_write) ...
    assert live_stack.query(a, f'{RAW}{{job="{config.APP_JOB}"}}')["data"]["result"]
    # ... and the store has none of it: only level:metric:operations names arrived.
    everything = live_stack.export(vm, '{__name__=~".+"}')
    names = {s["metric"]["__name__"] for s in everything}
    assert RAW not in names and "up" not in names
    assert all(re.fullmatch(r"[a-z][a-z_]*:[a-z0-9_]+:[a-z0-9_]+", n) for n in names), sorted(names)
    assert names >= {RECORDED, "slo:objective:ratio"}


@pytest.mark.live
def test_two_replicas_do_not_double_the_aggregates(pair):
    """Issue 9's HA pair: the replica label is dropped on write, so both replicas write one
    series per aggregate, and a sum over the store equals one Prometheus' sum."""
    vm, (a, b) = pair
    series = live_stack.export(vm, f'{{__name__="{RECORDED}"}}')
    assert all("replica" not in s["metric"] for s in series)
    keys = [tuple(sorted(s["metric"].items())) for s in series]
    assert len(keys) == len(set(keys))
    count = lambda base: live_stack.query(base, f"count({RECORDED})")["data"]["result"]  # noqa: E731
    in_store = wait_until(lambda: count(vm), 10, "the aggregate queryable in the store")
    assert float(in_store[0]["value"][1]) == float(count(a)[0]["value"][1])
    # Both replicas' own series carry their replica label in Prometheus (external labels are
    # added on the way out), so the store really received two writers' samples.
    assert _written(a) and _written(b)


@pytest.mark.live
def test_slo_dashboard_long_windows_read_from_the_store(pair):
    """The SLO dashboard's 30-day panels (on $lts_datasource) return data from VictoriaMetrics."""
    vm, _ = pair
    board = promql_ast.load_dashboard(promql_ast.ROOT / "dashboards" / "mystocks-slo.json")
    lts = [(title, t) for title, t in promql_ast.dashboard_targets(board)
           if t["datasource"]["uid"] == "${lts_datasource}"]
    assert len(lts) >= 2 * len(config.SLOS)

    def empty():
        missing = []
        for title, target in lts:
            if "market-data-freshness" in title:
                continue  # recorded only while the market is open
            expr = promql_ast.substitute(target["expr"].replace("$job", config.APP_JOB))
            answer = live_stack.query(vm, expr, time=f"{time.time():.3f}")
            if answer.get("status") != "success" or not answer["data"]["result"]:
                missing.append(f"{title!r} {target['refId']}: {answer.get('error', 'no data')}")
        return missing

    wait_until(lambda: not empty(), 20, "every long-window SLO panel answered by the store")


@pytest.mark.live
def test_store_slis_match_the_traffic(pair):
    """The 30-day SLIs computed in the store from the recorded event rates are the traffic's own:
    the synthetic exporter answers 1 request in 3 with a 5xx, and 10 of its 14 latency buckets
    lie at or under the latency SLO's 1 s."""
    vm, _ = pair
    board = promql_ast.load_dashboard(promql_ast.ROOT / "dashboards" / "mystocks-slo.json")
    expected = {"api-availability": 2 / 3, "api-latency": 10 / 14}
    seen = {}
    for title, target in promql_ast.dashboard_targets(board):
        slo = title.split(":", 1)[0]
        if slo in expected and title.endswith(f"SLI ({'30d'})"):
            expr = target["expr"].replace("$job", config.APP_JOB)
            result = live_stack.query(vm, expr, time=f"{time.time():.3f}")["data"]["result"]
            seen[slo] = float(result[0]["value"][1])
    assert seen.keys() == expected.keys()
    for slo, value in expected.items():
        assert abs(seen[slo] - value) < 0.02, (slo, seen[slo], value)
