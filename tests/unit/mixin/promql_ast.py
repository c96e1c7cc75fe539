"""PromQL helpers for the dashboard and consistency tests (a helper module, not a test).

promql-parser rejects Grafana's ``$__rate_interval``, ``$__interval`` and ``$var``, so every
expression is substituted first; then the parsed AST is walked with its ancestors, which is
what "counters only under rate()" and "which metric names are used" need.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_FILES = sorted((ROOT / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "alerts" / "rules").glob("*.y*ml")) if (ROOT / "alerts" / "rules").is_dir() else []

RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def substitute(expr: str, rate_interval: str = "5m", interval: str = "1m") -> str:
    """Grafana variables -> values Prometheus and promql-parser accept."""
    for name, value in (("__rate_interval", rate_interval), ("__interval", interval),
                        ("__range", "1h")):
        expr = re.sub(r"\$\{%s\}|\$%s\b" % (name, name), value, expr)
    # User variables only ever stand in label matchers ("=~\"$job\""): match everything.
    expr = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}|\[\[[A-Za-z_]\w*\]\]|\$[A-Za-z_]\w*", ".*", expr)
    return expr


def parse(expr: str, **subst):
    return promql_parser.parse(substitute(expr, **subst))


def walk(node, ancestors: tuple = ()) -> Iterator[tuple[object, tuple]]:
    """Every node with its ancestors (outermost first)."""
    yield node, ancestors
    inner = ancestors + (node,)
    if isinstance(node, promql_parser.BinaryExpr):
        children = [node.lhs, node.rhs]
    elif isinstance(node, promql_parser.Call):
        children = list(node.args)
    elif isinstance(node, promql_parser.AggregateExpr):
        children = [node.expr] + ([node.param] if node.param is not None else [])
    elif isinstance(node, promql_parser.MatrixSelector):
        children = [node.vector_selector]
    elif isinstance(node, (promql_parser.SubqueryExpr, promql_parser.UnaryExpr, promql_parser.ParenExpr)):
        children = [node.expr]
    else:  # VectorSelector, NumberLiteral, StringLiteral
        children = []
    for child in children:
        yield from walk(child, inner)


def _all_matchers(selector) -> list:
    matchers = list(selector.matchers.matchers)
    for group in selector.matchers.or_matchers or []:
        matchers.extend(group)
    return matchers


def selector_names(selector) -> set[str]:
    """Metric names a VectorSelector can select: its name and any ``__name__`` matcher.

    A regex ``__name__`` matcher counts when it is a plain alternation of names; any other
    regex is returned as ``regex:<pattern>`` so the consistency test flags it for a human.
    """
    names = {selector.name} if selector.name else set()
    for matcher in _all_matchers(selector):
        if matcher.name != "__name__":
            continue
        if matcher.op == promql_parser.MatchOp.Equal:
            names.add(matcher.value)
        elif matcher.op == promql_parser.MatchOp.Re:
            parts = matcher.value.split("|")
            names.update(parts) if all(_NAME.match(p) for p in parts) else names.add(f"regex:{matcher.value}")
        else:  # != and !~ select "everything but": not a reference to a metric
            names.add(f"negative:{matcher.value}")
    return names


def metric_names(ast) -> set[str]:
    names: set[str] = set()
    for node, _ in walk(ast):
        if isinstance(node, promql_parser.VectorSelector):
            names |= selector_names(node)
    return names


def rate_ranges(ast) -> list[tuple[str, float | None]]:
    """(function, range in seconds) of every rate()/irate()/increase() (None: not a plain selector)."""
    found = []
    for node, _ in walk(ast):
        if isinstance(node, promql_parser.Call) and node.func.name in RATE_FUNCTIONS:
            arg = node.args[0]
            seconds = arg.range.total_seconds() if isinstance(arg, promql_parser.MatrixSelector) else None
            found.append((node.func.name, seconds))
    return found


def bare_counters(ast) -> set[str]:
    """Counter-like series (``_total``, histogram ``_bucket/_count/_sum``) not read through
    rate()/irate()/increase(): a raw counter graphs process restarts, not traffic."""
    bare = set()
    for node, ancestors in walk(ast):
        if not isinstance(node, promql_parser.VectorSelector):
            continue
        counters = {n for n in selector_names(node) if n.endswith(COUNTER_SUFFIXES)}
        if not counters:
            continue
        under_rate = (len(ancestors) >= 2 and isinstance(ancestors[-1], promql_parser.MatrixSelector)
                      and isinstance(ancestors[-2], promql_parser.Call)
                      and ancestors[-2].func.name in RATE_FUNCTIONS)
        if not under_rate:
            bare |= counters
    return bare


# -- where the expressions live ---------------------------------------------------------------
def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def all_panels(board: dict) -> Iterator[dict]:
    """Every panel, rows included, and panels nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", []) or []


def dashboard_targets(board: dict) -> Iterator[tuple[str, dict]]:
    """(panel title, target) for every query of every panel."""
    for panel in all_panels(board):
        for target in panel.get("targets", []) or []:
            yield panel.get("title", "?"), target


def load_rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text()) or {}
    return [rule for group in doc.get("groups", []) or [] for rule in group.get("rules", []) or []]


def rule_exprs() -> Iterator[tuple[str, str, str]]:
    """(file, alert or record name, expr) for every rule under alerts/rules/."""
    for path in RULE_FILES:
        for rule in load_rules(path):
            yield path.name, rule.get("alert") or rule.get("record") or "?", str(rule["expr"])


def recorded_names() -> set[str]:
    return {rule["record"] for path in RULE_FILES for rule in load_rules(path) if "record" in rule}
