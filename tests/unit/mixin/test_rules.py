"""The Prometheus rules: valid (promtool check), behaving as specified (promtool unit tests),
every alert tested both ways, well-formed for routing and runbooks, and freshly generated.

promtool is required in CI (CI=true) and skipped locally when missing (tests/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

import promql_ast  # noqa: E402  (shared PromQL helper beside this file)
import promql_parser  # noqa: E402

from mystocks_otel_mixin import config, rules  # noqa: E402
from mystocks_otel_mixin.docs import alerting  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CFG = config.DEFAULT
RULE_FILES = [ROOT / rel for rel in rules.RULE_FILES]
TEST_FILES = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
SPEC_CATEGORIES = {"api", "database", "cache", "websocket", "market_data", "system", "health",
                   "business", "aggregated"}
SEVERITIES = set(config.SEVERITIES)
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")


def _rules() -> list[dict]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


ALERTS = [r for r in _rules() if "alert" in r]
RECORDS = [r for r in _rules() if "record" in r]


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


# -- promtool ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    result = _run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool, path):
    result = _run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rejects_a_broken_rule(promtool, tmp_path):
    """The check above can fail: a typo in an expression is caught."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m])\n")
    assert _run(promtool, "check", "rules", str(bad)).returncode != 0


# -- every alert tested both ways ---------------------------------------------------------

def _test_cases() -> dict[str, dict[str, list[str]]]:
    """alertname -> {"firing": [where], "silent": [where]} from every alert_rule_test."""
    cases: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"firing": [], "silent": []})
    for path in TEST_FILES:
        for i, group in enumerate(yaml.safe_load(path.read_text())["tests"]):
            for case in group.get("alert_rule_test") or []:
                kind = "firing" if case.get("exp_alerts") else "silent"
                cases[case["alertname"]][kind].append(f"{path.name}#{i}@{case['eval_time']}")
    return cases


def test_every_alert_has_a_firing_and_a_silent_test():
    cases = _test_cases()
    missing = []
    for alert in ALERTS:
        name = alert["alert"]
        if not cases[name]["firing"]:
            missing.append(f"{name}: no firing case")
        if name != "Watchdog" and not cases[name]["silent"]:
            missing.append(f"{name}: no silent case")
    assert not missing, "\n".join(missing)


def test_tests_name_only_real_alerts():
    names = {a["alert"] for a in ALERTS}
    unknown = set(_test_cases()) - names
    assert not unknown, f"tests for alerts that do not exist: {sorted(unknown)}"


def test_key_recording_rules_have_expression_tests():
    tested = set()
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("promql_expr_test") or []:
                tested |= promql_ast.metric_names(promql_parser.parse(case["expr"]))
    for record in ("job:http_server_requests_errors:ratio_rate5m", "job:http_server_request_duration_seconds:p95_5m",
                   "job_cache:mystocks_cache_hit:ratio_rate5m", "mystocks:trading_session:open",
                   config.slo_error_ratio_record("1h")):
        assert record in tested, f"{record} has no promql_expr_test"


# -- structure ----------------------------------------------------------------------------

def test_alert_count_and_categories():
    assert len(ALERTS) >= 40, len(ALERTS)
    categories = {a["labels"]["category"] for a in ALERTS}
    assert SPEC_CATEGORIES <= categories, SPEC_CATEGORIES - categories
    names = [a["alert"] for a in ALERTS]
    assert len(names) == len(set(names)), "duplicate alert names"


def test_every_alert_is_complete():
    problems = []
    for a in ALERTS:
        labels, ann = a.get("labels", {}), a.get("annotations", {})
        name = a["alert"]
        if not re.fullmatch(r"\d+[smh]", str(a.get("for", ""))):
            problems.append(f"{name}: no for")
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r}")
        if labels.get("priority") not in config.PRIORITIES:
            problems.append(f"{name}: priority")
        if labels.get("team") not in config.TEAMS:
            problems.append(f"{name}: team")
        if labels.get("category") not in config.CATEGORIES:
            problems.append(f"{name}: category")
        for key in ("summary", "description", "runbook_url", "dashboard_url"):
            if not ann.get(key):
                problems.append(f"{name}: no {key}")
        if not ann.get("runbook_url", "").startswith(config.RUNBOOK_URL + "#"):
            problems.append(f"{name}: runbook_url not into {config.RUNBOOK_URL}")
        link_vars = r"var-\w+=\{\{ \$labels\.\w+ \}\}"
        if not re.fullmatch(re.escape(config.GRAFANA_URL) + rf"/d/[\w-]+(\?{link_vars}(&{link_vars})*)?",
                            ann.get("dashboard_url", "")):
            problems.append(f"{name}: dashboard_url")
    assert not problems, "\n".join(problems)


def test_teams_follow_the_routing_rules():
    for a in ALERTS:
        if a["labels"]["category"] == "market_data":
            assert a["labels"]["team"] == "data", a["alert"]
    teams = {a["alert"]: a["labels"]["team"] for a in ALERTS}
    assert teams["StaleData"] == teams["LowDataCompleteness"] == "data"
    assert teams["ApiHighResponseTime"] == teams["DatabaseSlowQueries"] == teams["HighCpuUsage"] == "performance"


def test_spec_threshold_api_p95():
    alert = next(a for a in ALERTS if a["alert"] == "ApiHighResponseTime")
    assert alert["for"] == "5m" and alert["labels"]["severity"] == "warning"
    assert re.search(r"p95_5m\{[^}]*\} > 1$", alert["expr"], re.M), alert["expr"]


def test_watchdog_goes_to_its_heartbeat_receiver():
    watchdog = next(a for a in ALERTS if a["alert"] == "Watchdog")
    assert watchdog["expr"] == "vector(1)"
    assert watchdog["labels"]["heartbeat"] == "true"
    assert watchdog["labels"]["severity"] == "info" and watchdog["labels"]["category"] == "meta"
    assert [a["alert"] for a in ALERTS if a["labels"].get("heartbeat")] == ["Watchdog"]


def test_absent_and_target_down_alerts():
    exprs = {a["alert"]: a["expr"] for a in ALERTS}
    assert any(f'absent(up{{job="{config.APP_JOB}"}})' in e for e in exprs.values())
    assert any(f'up{{job="{config.APP_JOB}"}} == 0' in e for e in exprs.values())
    assert "unless on (job, instance) count by (job, instance) (http_server_request_duration_seconds_count" \
        in exprs["HttpMetricsAbsent"]


def test_slo_records_and_burn_rate_alerts():
    recorded = {(r["record"], r.get("labels", {}).get("slo")) for r in RECORDS}
    for slo in config.SLOS:
        for window in config.SLO_WINDOWS:
            assert (config.slo_error_ratio_record(window), slo.name) in recorded, (slo.name, window)
        burns = [a for a in ALERTS if a["labels"]["category"] == "slo" and f'slo="{slo.name}"' in a["expr"]]
        assert {a["labels"]["severity"] for a in burns} == {"critical", "warning"}, slo.name
        for a in burns:
            for severity, long, short, factor in config.BURN_RATE_ALERTS:
                if severity == a["labels"]["severity"]:
                    limit = f"{factor * slo.error_budget:.6g}"
                    assert f"ratio_rate{long}{{slo=\"{slo.name}\"}} > {limit}" in a["expr"], a["alert"]
                    assert f"ratio_rate{short}{{slo=\"{slo.name}\"}} > {limit}" in a["expr"], a["alert"]


def test_recording_rule_names():
    bad = [r["record"] for r in RECORDS if not RECORD_NAME.match(r["record"])]
    assert not bad, f"not level:metric:operations: {bad}"


def _asts():
    for rule in _rules():
        yield rule.get("alert") or rule["record"], promql_parser.parse(rule["expr"])


def test_histogram_quantile_aggregates_by_le():
    bad = []
    for name, ast in _asts():
        for node, _ in promql_ast.walk(ast):
            if isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile":
                inner = node.args[1]
                if not (isinstance(inner, promql_parser.AggregateExpr) and str(inner.op) == "sum"
                        and inner.modifier is not None and str(inner.modifier.type).endswith("By")
                        and "le" in inner.modifier.labels):
                    bad.append(name)
    assert not bad, f"histogram_quantile without sum by (..., le): {bad}"


def _unparen(node):
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def test_divisions_are_guarded():
    """Every a / b divides by a literal, `(b > 0)` or clamp_min(b, ...): never by a possible 0."""
    bad = []
    for name, ast in _asts():
        for node, _ in promql_ast.walk(ast):
            if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "/":
                rhs = _unparen(node.rhs)
                ok = isinstance(rhs, promql_parser.NumberLiteral) or (
                    isinstance(rhs, promql_parser.Call) and rhs.func.name == "clamp_min") or (
                    isinstance(rhs, promql_parser.BinaryExpr) and str(rhs.op) == ">"
                    and isinstance(_unparen(rhs.rhs), promql_parser.NumberLiteral)
                    and _unparen(rhs.rhs).val == 0 and not (rhs.modifier and rhs.modifier.return_bool))
                if not ok:
                    bad.append(name)
    assert not bad, f"unguarded division in: {sorted(set(bad))}"


def test_every_rule_has_its_reasoning_comment():
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# Generated by mystocks_otel_mixin.rules"), path
        for i, line in enumerate(lines):
            if re.match(r"\s+- (alert|record): ", line):
                assert lines[i - 1].lstrip().startswith("#"), f"{path.name}:{i + 1} has no comment above"


# -- docs and generation ------------------------------------------------------------------

def _github_anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_runbook_anchors_exist():
    anchors = _github_anchors((ROOT / "docs" / "runbooks.md").read_text())
    missing = [a["alert"] for a in ALERTS if a["annotations"]["runbook_url"].split("#", 1)[1] not in anchors]
    assert not missing, f"no runbook heading for: {missing}"
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for a in ALERTS:
        if a["alert"] != "Watchdog":
            assert f"amtool silence add alertname={a['alert']} " in runbooks, a["alert"]


def test_alerting_doc_lists_every_alert_and_summarises_routing():
    doc = (ROOT / "docs" / "ALERTING.md").read_text()
    for a in ALERTS:
        assert f"[{a['alert']}](runbooks.md#" in doc, a["alert"]
    routing = doc.split("## Routing and inhibition", 1)[1]
    assert "alerts/alertmanager/README.md" in routing  # the tested table lives there
    for word in ("critical", "warning", "info", "Watchdog", "Inhibition", "continue: true"):
        assert word in routing, word
    assert "remote_write" in doc and "15d" in doc


def test_generated_files_are_up_to_date():
    generated = {**rules.generate(CFG), **alerting.generate(CFG)}
    assert generated == {**rules.generate(CFG), **alerting.generate(CFG)}, "generator output is not deterministic"
    stale = [rel for rel, text in generated.items()
             if not (ROOT / rel).exists() or (ROOT / rel).read_text() != text]
    assert not stale, f"run `mystocks-otel render` and commit: {stale}"


# -- the mixin's layout ----------------------------------------------------------------------

def test_each_category_has_one_rules_module_and_one_test_file():
    """kubernetes-mixin's grouping: rules/<category>.py <-> alerts/tests/<category>.yml."""
    modules = {p.stem for p in (ROOT / "mixin" / "mystocks_otel_mixin" / "rules").glob("*.py")} - {"__init__"}
    assert modules == set(config.CATEGORIES) == set(rules.MODULES)
    tests = {p.stem for p in TEST_FILES}
    assert set(config.CATEGORIES) <= tests, set(config.CATEGORIES) - tests
    by_category = defaultdict(set)
    for a in ALERTS:
        by_category[a["labels"]["category"]].add(a["alert"])
    cases = _test_cases()
    for category, names in by_category.items():
        text = (ROOT / "alerts" / "tests" / f"{category}.yml").read_text()
        untested_here = [n for n in names if f"alertname: {n}\n" not in text]
        assert not untested_here, f"{category}: tested outside alerts/tests/{category}.yml: {untested_here}"
        assert all(cases[n]["firing"] for n in names)


def test_render_overrides_reach_every_rule():
    """`mystocks-otel render --grafana-url ... --app-job ... --slo ...` changes the output, and
    only through the config passed in (the module defaults stay as they were)."""
    custom = config.MixinConfig(grafana_url="https://grafana.prod.example/", app_job="api-prod",
                                runbook_url="https://wiki.example/runbooks").with_slo_objectives(
        {"api-availability": 0.995})
    files = rules.generate(custom)
    text = "".join(files.values())
    assert 'job="api-prod"' in text and f'job="{config.APP_JOB}"' not in text
    parsed = [r for f in files.values() for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    for a in (r for r in parsed if "alert" in r):
        assert a["annotations"]["dashboard_url"].startswith("https://grafana.prod.example/d/"), a["alert"]
        assert a["annotations"]["runbook_url"].startswith("https://wiki.example/runbooks#"), a["alert"]
    assert 'slo:error_budget:ratio' in text and "vector(0.005)" in text
    assert rules.generate(CFG) == rules.generate(config.DEFAULT)  # nothing was patched globally
    with pytest.raises(ValueError, match="unknown SLO nope"):
        config.DEFAULT.with_slo_objectives({"nope": 0.9})
    with pytest.raises(ValueError, match="grafana_url"):
        config.MixinConfig(grafana_url="grafana:3000")


def test_cli_render_writes_the_overrides(tmp_path):
    from mystocks_otel.cli import main

    assert main(["render", "--root", str(tmp_path), "--app-job", "api-prod",
                 "--grafana-url", "https://g.example", "--slo", "api-latency=0.95",
                 "--holiday", "2026-10-01"]) == 0
    alerts_text = (tmp_path / rules.ALERTS_FILE).read_text()
    assert 'up{job="api-prod"} == 0' in alerts_text and "https://g.example/d/mystocks-main" in alerts_text
    assert "year() == 2026 and month() == 10 and day_of_month() == 1" in (tmp_path / rules.RECORDING_FILE).read_text()
    assert main(["render", "--root", str(tmp_path), "--slo", "api-latency"]) == 2
    assert main(["render", "--root", str(tmp_path), "--holiday", "tomorrow"]) == 2


def test_the_promql_builder_rejects_unknown_metrics():
    from mystocks_otel_mixin.lib.promql import PromQL, UnknownMetric

    q = PromQL("mystocks-api")
    assert q.sel("mystocks_cache_hits_total") == 'mystocks_cache_hits_total{job="mystocks-api"}'
    with pytest.raises(UnknownMetric, match="mystocks_cache_hit_total"):
        q.sel("mystocks_cache_hit_total")


def _holiday_case(promtool, directory: Path, holidays: tuple[str, ...], open_: bool):
    """Render with ``holidays`` into ``directory`` and run a promtool case over Thursday
    1970-01-01 (test time 0), quotes 10 minutes old all day: is the session open at 150m,
    and is StaleData firing?"""
    directory.mkdir()
    for rel, text in rules.generate(config.MixinConfig(holidays=holidays)).items():
        (directory / Path(rel).name).write_text(text)
    expect = [{"labels": "{}", "value": 1}] if open_ else []
    test = {
        "rule_files": [Path(f).name for f in rules.RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": f'mystocks_data_quality_freshness_seconds{{job="{config.APP_JOB}", '
                                        'instance="api-1:8000", dataset="quotes"}', "values": "600x200"}],
            "promql_expr_test": [
                {"expr": "count(mystocks:trading_session:open)", "eval_time": "150m", "exp_samples": expect},
                {"expr": 'count(ALERTS{alertname="StaleData", alertstate="firing"})', "eval_time": "150m",
                 "exp_samples": expect},
            ],
        }],
    }
    (directory / "holiday.yml").write_text(yaml.safe_dump(test))
    return _run(promtool, "test", "rules", str(directory / "holiday.yml"))


def test_a_rendered_holiday_closes_the_session_and_the_gated_rules(promtool, tmp_path):
    """Holidays (`mystocks-otel render --holiday 1970-01-01`): the session series stays absent,
    so StaleData (and the freshness SLI, gated on the same series) are quiet. Control: the
    same day rendered without the holiday has the session open and StaleData firing."""
    holiday = _holiday_case(promtool, tmp_path / "holiday", ("1970-01-01",), open_=False)
    assert holiday.returncode == 0, holiday.stdout + holiday.stderr
    workday = _holiday_case(promtool, tmp_path / "workday", (), open_=True)
    assert workday.returncode == 0, workday.stdout + workday.stderr
    with pytest.raises(ValueError, match="holiday"):
        config.MixinConfig(holidays=("1970-13-01",))


def test_market_data_records_its_last_update_timestamp():
    """Row 8's input: every batch recorded through record_market_data sets the source's
    last-update timestamp (the demo's producer records through it), an empty batch does not."""
    import time

    import mystocks_otel
    from mystocks_otel.testing import capture_metrics

    with capture_metrics() as metrics:
        mystocks_otel.record_market_data("simulator", "quote", points=0)
        assert metrics.points("mystocks.market_data.last_update_timestamp") == []
        before = time.time()
        mystocks_otel.record_market_data("simulator", "quote", points=20, duration_seconds=0.01)
        stamp = metrics.value("mystocks.market_data.last_update_timestamp", {"source": "simulator"})
        assert before <= stamp <= time.time()
        assert "mystocks_market_data_last_update_timestamp_seconds" in metrics.prometheus_text()


def test_the_catalog_speaks_the_same_severities_and_categories():
    """The alert-lifecycle metrics label by severity and category: their bounded values are
    the mixin's one list (config.SEVERITIES, config.CATEGORIES), plus the catalog's "other"."""
    from mystocks_otel import catalog

    assert catalog.SEVERITY.values - {catalog.OTHER} == set(config.SEVERITIES)
    assert catalog.CATEGORY.values - {catalog.OTHER} == set(config.CATEGORIES)
    assert set(catalog.PRIORITIES) == set(config.PRIORITIES)
