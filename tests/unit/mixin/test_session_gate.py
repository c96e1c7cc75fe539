"""Row 10 (issue 15): a session-gated alert is gated as a whole.

``a or b and on () open`` parses as ``a or (b and on () open)``: only ``b`` is gated, and ``a``
fires after the close and through lunch. The check walks each gated alert's PromQL AST: every
series it reads must sit on the left of an ``and`` whose right side is the session series.
"""

from __future__ import annotations

import promql_parser
import yaml

import promql_ast  # noqa: E402  (shared PromQL helper beside this file)

from mystocks_otel_mixin import config, rules
from mystocks_otel_mixin.lib.promql import gated
from mystocks_otel_mixin.rules import slo

SESSION = slo.SESSION
GATE_KEY, GATE_VALUE = config.DEFAULT.sessions.gate_label


def _children(node) -> list:
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(node, promql_parser.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, (promql_parser.SubqueryExpr, promql_parser.UnaryExpr, promql_parser.ParenExpr)):
        return [node.expr]
    return []


def ungated(expr: str) -> set[str]:
    """The series of ``expr`` not under ``(...) and on () <session>``."""

    def visit(node, is_gated: bool) -> set[str]:
        if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "and" and SESSION in promql_ast.metric_names(node.rhs):
            return visit(node.lhs, True)
        if isinstance(node, promql_parser.VectorSelector):
            return set() if is_gated or node.name == SESSION else {node.name}
        return set().union(set(), *(visit(c, is_gated) for c in _children(node)))

    return visit(promql_parser.parse(expr), False)


def _gated_alerts() -> list[dict]:
    files = rules.generate(config.DEFAULT)
    return [r for text in files.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
            if "alert" in r and r["labels"].get(GATE_KEY) == GATE_VALUE]


def test_the_check_fails_on_the_unparenthesised_form():
    one = 'slo:sli_error:ratio_rate1h{slo="x"} > 0.144 and slo:sli_error:ratio_rate5m{slo="x"} > 0.144'
    two = 'slo:sli_error:ratio_rate6h{slo="x"} > 0.06 and slo:sli_error:ratio_rate30m{slo="x"} > 0.06'
    before = f"({one})\nor\n({two})\nand on () {SESSION}"
    assert ungated(before) == {"slo:sli_error:ratio_rate1h", "slo:sli_error:ratio_rate5m"}
    assert ungated(gated(f"({one})\nor\n({two})", SESSION)) == set()


def test_the_freshness_burn_alerts_are_gated_as_a_whole():
    alerts = {a["alert"]: a for a in _gated_alerts()}
    for name in ("MarketDataFreshnessErrorBudgetBurnFast", "MarketDataFreshnessErrorBudgetBurnSlow"):
        expr = alerts[name]["expr"]
        assert not ungated(expr), (name, ungated(expr))
        top = promql_parser.parse(expr)
        assert isinstance(top, promql_parser.BinaryExpr) and str(top.op) == "and", name
        # Both window pairs are inside the gate: the `or` is on its left.
        inner = top.lhs.expr if isinstance(top.lhs, promql_parser.ParenExpr) else top.lhs
        assert isinstance(inner, promql_parser.BinaryExpr) and str(inner.op) == "or", name


def test_every_session_gated_slo_alert_is_gated_as_a_whole():
    gated_slo = [a for a in _gated_alerts() if a["labels"]["category"] == "slo"]
    assert len(gated_slo) >= 4  # the two freshness burns and two SLI-absent alerts
    problems = {a["alert"]: ungated(a["expr"]) for a in gated_slo if ungated(a["expr"])}
    assert not problems, problems
