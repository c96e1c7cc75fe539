"""The Prometheus rules: valid (promtool check), behaving as specified (promtool unit tests),
every alert tested both ways, well-formed for routing and runbooks, and freshly generated.

promtool is required in CI (CI=true) and skipped locally when missing (tests/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
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
SEVERITIES = set(CFG.labels.severities)
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
        if labels.get("priority") not in CFG.labels.priorities:
            problems.append(f"{name}: priority")
        if labels.get("team") not in CFG.labels.teams:
            problems.append(f"{name}: team")
        if labels.get("category") not in CFG.labels.categories:
            problems.append(f"{name}: category")
        for key in ("summary", "description", "runbook_url", "dashboard_url"):
            if not ann.get(key):
                problems.append(f"{name}: no {key}")
        if not ann.get("runbook_url", "").startswith(CFG.runbook_url + "#"):
            problems.append(f"{name}: runbook_url not into {CFG.runbook_url}")
        link_vars = r"var-\w+=\{\{ \$labels\.\w+ \}\}"
        if not re.fullmatch(re.escape(CFG.grafana_url) + rf"/d/[\w-]+(\?{link_vars}(&{link_vars})*)?",
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
        burns = [a for a in ALERTS if a["labels"]["category"] == "slo" and "ErrorBudgetBurn" in a["alert"]
                 and f'slo="{slo.name}"' in a["expr"]]
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


def test_generation_is_deterministic():
    """(Whether the committed files are current is tests/unit/mixin/test_generated.py's job.)"""
    generated = {**rules.generate(CFG), **alerting.generate(CFG)}
    assert generated == {**rules.generate(CFG), **alerting.generate(CFG)}, "generator output is not deterministic"


def test_generated_files_name_the_module_that_writes_them():
    from mystocks_otel_mixin import render

    writers = {"alerts/rules/": "mystocks_otel_mixin.rules", "docs/runbooks.md": "mystocks_otel_mixin.docs.alerting",
               "docs/ALERTING.md": "mystocks_otel_mixin.docs.alerting", "docs/METRICS.md": "mystocks_otel_mixin.docs.metrics",
               "dashboards/provisioning/": "mystocks_otel_mixin.dashboards.provisioning",
               "alerts/alertmanager/": "mystocks_otel_mixin.routing", "slo/": "mystocks_otel_mixin.openslo"}
    for rel, text in render.generate_all(CFG).items():
        if rel.endswith(".json"):
            continue  # dashboards: in their description (tests/integration/mixin/test_dashboards.py)
        module = next(m for prefix, m in writers.items() if rel.startswith(prefix))
        assert f"Generated by {module} (mystocks-otel render); do not edit." in text.splitlines()[0], rel


# -- the mixin's layout ----------------------------------------------------------------------

def test_each_category_has_one_rules_module_and_one_test_file():
    """kubernetes-mixin's grouping: rules/<category>.py <-> alerts/tests/<category>.yml."""
    modules = {p.stem for p in (ROOT / "mixin" / "mystocks_otel_mixin" / "rules").glob("*.py")} - {"__init__"}
    assert modules == set(CFG.labels.categories) == set(rules.MODULES)
    tests = {p.stem for p in TEST_FILES}
    assert set(CFG.labels.categories) <= tests, set(CFG.labels.categories) - tests
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


def _alert(files: dict[str, str], name: str) -> dict:
    return next(r for text in files.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
                if r.get("alert") == name)


def test_a_changed_threshold_changes_the_expression_and_the_prose():
    """Thresholds come from MixinConfig: the expression, the summary and description, the runbook
    and the docs' threshold column all follow one override; nothing repeats the number by hand."""
    default = _alert(rules.generate(CFG), "DatabaseSlowQueries")
    assert "> 0.05\n" in default["expr"] and "5%" in default["annotations"]["summary"]

    custom = CFG.with_overrides({"thresholds.db_slow_query_ratio_warning": "0.12",
                                 "thresholds.min_request_rate": "0.5"})
    files = rules.generate(custom)
    alert = _alert(files, "DatabaseSlowQueries")
    assert "job:mystocks_db_slow_queries:ratio_rate5m{" in alert["expr"]
    assert "> 0.12\n" in alert["expr"] and "job:mystocks_db_queries:rate5m > 0.5" in alert["expr"]
    assert alert["annotations"]["summary"] == "More than 12% of SQL statements are slow."
    assert "(threshold 12%)" in alert["annotations"]["description"]
    assert "5%" not in alert["annotations"]["summary"] + alert["annotations"]["description"]
    docs = alerting.generate(custom)
    assert "slow share > 12% for 10m (with ≥ 0.5 q/s)" in docs["docs/runbooks.md"]
    assert "slow share > 12% for 10m (with ≥ 0.5 q/s)" in docs["docs/ALERTING.md"]
    # Every other alert's floor moved with it, in the expression and the threshold text alike.
    latency = _alert(files, "ApiHighResponseTime")
    assert "job:http_server_requests:rate5m > 0.5" in latency["expr"]
    assert "(with ≥ 0.5 req/s)" in docs["docs/runbooks.md"]
    # A threshold shared with a panel: the dashboard's threshold line moves too.
    from mystocks_otel_mixin import dashboards

    board = yaml.safe_load(dashboards.generate(CFG.with_overrides({"thresholds.cpu_percent_warning": 70}))
                           ["dashboards/mystocks-main.json"])
    cpu = next(p for p in board["panels"] if p.get("title") == "CPU Usage")
    assert [s["value"] for s in cpu["fieldConfig"]["defaults"]["thresholds"]["steps"]][1] == 70
    assert "(70% and 95%)" in cpu["description"]


@pytest.mark.parametrize("setting, message", [
    ("thresholds.cache_hit_ratio_warning=abc", "thresholds.cache_hit_ratio_warning='abc': expected a number"),
    ("thresholds.cache_hit_ratio_warnin=0.7", "unknown key thresholds.cache_hit_ratio_warnin: expected e.g. "
                                              "thresholds.cache_hit_ratio_warning"),
    ("thresholds.cache_hit_ratio_warning=1.5", "thresholds.cache_hit_ratio_warning=1.5: expected a ratio"),
    ("thresholds.api_error_ratio_warning=0.2", "expected at most thresholds.api_error_ratio_critical"),
    ("sessions.utc_minutes=90-210,300", "expected 2 values per item, e.g. sessions.utc_minutes=90-210,300-420"),
    ("labels.teams=platform,data", "routing.team_channels: unknown teams performance"),
    ("labels.categories=api,database", "labels.categories=api,database: expected the rules modules' categories"),
    ("nothing", "--set 'nothing': expected KEY=VALUE"),
])
def test_render_set_names_the_key_and_the_expected_form(tmp_path, capsys, setting, message):
    from mystocks_otel.cli import main

    assert main(["render", "--root", str(tmp_path), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.iterdir()), "nothing is written from a bad config"


def test_render_config_file_and_show_config(tmp_path, capsys):
    """--config FILE.yaml takes the keys nested; --show-config prints them in --set's form."""
    from mystocks_otel.cli import main

    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("app_job: api-prod\nthresholds:\n  cache_hit_ratio_warning: 0.7\n"
                      "sessions:\n  utc_minutes: [[90, 210]]\nslos:\n  api-latency: 0.95\n")
    out = tmp_path / "out"
    assert main(["render", "--root", str(out), "--config", str(deploy),
                 "--set", "thresholds.cache_hit_ratio_critical=0.4"]) == 0
    capsys.readouterr()
    alert = _alert({"a": (out / rules.ALERTS_FILE).read_text()}, "CacheLowHitRate")
    assert "< 0.7\n" in alert["expr"] and 'job="api-prod"' in alert["expr"] and "70%" in alert["annotations"]["summary"]
    assert "< 0.4\n" in _alert({"a": (out / rules.ALERTS_FILE).read_text()}, "CacheCriticalHitRate")["expr"]
    assert "hour() * 60 + minute() < 210" in (out / rules.RECORDING_FILE).read_text()
    assert "(300" not in (out / rules.RECORDING_FILE).read_text()  # the afternoon session is gone

    assert main(["render", "--config", str(deploy), "--show-config"]) == 0
    shown = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert shown["thresholds.cache_hit_ratio_warning"] == "0.7" and shown["sessions.utc_minutes"] == "90-210"
    assert shown["slos.api-latency"] == "0.95" and shown["labels.teams"] == "platform,data,performance"
    # Every shown value is accepted back by --set (the round trip a deployment script relies on).
    assert CFG.with_overrides({k: v for k, v in shown.items() if k != "loki_url"}) is not None

    deploy.write_text("- thresholds\n")
    assert main(["render", "--root", str(out), "--config", str(deploy)]) == 2
    assert "expected a mapping of MixinConfig keys" in capsys.readouterr().err
    deploy.write_text("thresholds: [1, 2]\n")
    assert main(["render", "--root", str(out), "--config", str(deploy)]) == 2
    assert "thresholds is a group: expected a key inside it" in capsys.readouterr().err


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
    for rel, text in rules.generate(config.MixinConfig().with_holidays(holidays)).items():
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
        config.MixinConfig().with_holidays(("1970-13-01",))


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
    the mixin's one list (CFG.labels.severities, CFG.labels.categories), plus the catalog's "other"."""
    from mystocks_otel import catalog

    assert catalog.SEVERITY.values - {catalog.OTHER} == set(CFG.labels.severities)
    assert catalog.CATEGORY.values - {catalog.OTHER} == set(CFG.labels.categories)
    assert set(catalog.PRIORITIES) == set(CFG.labels.priorities)
