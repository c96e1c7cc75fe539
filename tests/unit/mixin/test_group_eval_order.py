"""promtool evaluates a test file's rule groups in random order unless the file sets
``group_eval_order``. A rule that reads ``ALERTS`` (ServiceDegradation, MultipleAlertsActive,
severity:alerts_firing:count) then sees this evaluation's alerts or the previous one's by
chance, and its scenarios pass or fail by chance. So every alerts/tests file that tests such a
rule (or queries ALERTS itself) sets the order, lists every group it loads (an unlisted group
ties with the first one, and ties are random too), and runs each group that reads ALERTS after
every group that writes alerts.
"""

from __future__ import annotations

import re
from pathlib import Path

import promql_ast  # noqa: E402  (shared PromQL helper beside this file)
import yaml

ROOT = Path(__file__).resolve().parents[3]
TEST_FILES = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
_READS_ALERTS = re.compile(r"\bALERTS\b")  # not ALERTS_FOR_STATE


def _groups(test_path: Path, doc: dict) -> dict[str, list[dict]]:
    """The rule groups the test file loads: name -> rules."""
    groups: dict[str, list[dict]] = {}
    for rel in doc.get("rule_files") or []:
        for group in yaml.safe_load((test_path.parent / rel).read_text())["groups"]:
            groups[group["name"]] = group["rules"]
    return groups


def _tested_names(doc: dict) -> tuple[set[str], bool]:
    """(alert and metric names the file's cases evaluate, whether an expression reads ALERTS)."""
    names: set[str] = set()
    queries_alerts = False
    for group in doc.get("tests") or []:
        names |= {case["alertname"] for case in group.get("alert_rule_test") or []}
        for case in group.get("promql_expr_test") or []:
            names |= promql_ast.metric_names(promql_ast.parse(case["expr"]))
            queries_alerts |= bool(_READS_ALERTS.search(case["expr"]))
    return names, queries_alerts


def order_problems(test_path: Path, doc: dict) -> list[str]:
    """What is wrong with the file's group_eval_order (nothing when it tests no ALERTS reader)."""
    groups = _groups(test_path, doc)
    readers = {(rule.get("alert") or rule.get("record")): name
               for name, rules in groups.items() for rule in rules if _READS_ALERTS.search(rule["expr"])}
    tested, queries_alerts = _tested_names(doc)
    involved = {readers[n] for n in tested & set(readers)}
    if not involved and not queries_alerts:
        return []
    order = doc.get("group_eval_order")
    if not order:
        return [f"{test_path.name}: tests {sorted(tested & set(readers)) or 'ALERTS'} but sets no group_eval_order"]
    problems = []
    unlisted = sorted(set(groups) - set(order))
    if unlisted:
        problems.append(f"{test_path.name}: group_eval_order leaves out {unlisted} (they run in random order)")
    unknown = sorted(set(order) - set(groups))
    if unknown:
        problems.append(f"{test_path.name}: group_eval_order names groups it does not load: {unknown}")
    writers = {name for name, rules in groups.items() if any("alert" in r for r in rules)}
    position = {name: i for i, name in enumerate(order)}
    for reader in sorted(involved):
        early = sorted(w for w in writers - {reader} if position.get(w, -1) > position.get(reader, -1))
        if early:
            problems.append(f"{test_path.name}: {reader} reads ALERTS but runs before {early}")
    return problems


def test_files_that_test_alerts_reading_alerts_set_the_group_order():
    problems = [p for path in TEST_FILES for p in order_problems(path, yaml.safe_load(path.read_text()))]
    assert not problems, "\n".join(problems)


def test_the_order_check_fails_without_an_order_and_with_a_reader_first():
    """The check above can fail: aggregated.yml without its order, then with the aggregated
    group first, are both refused."""
    path = ROOT / "alerts" / "tests" / "aggregated.yml"
    doc = yaml.safe_load(path.read_text())
    assert order_problems(path, doc) == []
    unordered = {k: v for k, v in doc.items() if k != "group_eval_order"}
    assert "sets no group_eval_order" in order_problems(path, unordered)[0]
    reader_first = dict(doc, group_eval_order=["mystocks-aggregated.alerts"]
                        + [g for g in doc["group_eval_order"] if g != "mystocks-aggregated.alerts"])
    assert any("reads ALERTS but runs before" in p for p in order_problems(path, reader_first))
    partial = dict(doc, group_eval_order=doc["group_eval_order"][-3:])
    assert any("leaves out" in p for p in order_problems(path, partial))
