"""The catalog consistency test: dashboards and rules speak only the catalog's vocabulary.

Every metric name in every PromQL expression (alert and record rules under alerts/rules/,
every dashboard query) must be a series the catalog says we emit, a series one of our
recording rules produces, or one of a few Prometheus/Collector names. A typo or a renamed
metric would otherwise leave an alert that can never fire and a panel that shows "No data".
The reverse: every P0/P1 metric is watched by at least one panel or alert.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import pytest

import promql_ast  # noqa: E402  (helper beside this file; tests/ is not a package)

from mystocks_otel import catalog  # noqa: E402
from mystocks_otel_mixin.lib.promql import EXTERNAL_NAMES, EXTERNAL_PREFIXES  # noqa: E402

#: Prometheus' own series and the monitoring stack's self-metrics: not in the catalog, still
#: real. The same list the mixin's PromQL builder checks names against.
ALLOWED_NAMES = EXTERNAL_NAMES
ALLOWED_PREFIXES = EXTERNAL_PREFIXES

CATALOG_SERIES = frozenset(name for spec in catalog.METRICS for name in spec.prometheus_series)


def _expressions() -> list[tuple[str, str, str]]:
    """(file, where, expr) for every rule expr and every dashboard query."""
    found = [(f"alerts/rules/{file}", name, expr) for file, name, expr in promql_ast.rule_exprs()]
    for path in promql_ast.DASHBOARD_FILES:
        board = promql_ast.load_dashboard(path)
        for title, target in promql_ast.dashboard_targets(board):
            found.append((f"dashboards/{path.name}", f"{title} [{target.get('refId')}]", target["expr"]))
    return found


def _references() -> tuple[dict[str, set[str]], list[str]]:
    """metric name -> {"file: where"}, and the expressions that do not parse."""
    used: dict[str, set[str]] = defaultdict(set)
    unparsable = []
    for file, where, expr in _expressions():
        try:
            names = promql_ast.metric_names(promql_ast.parse(expr))
        except ValueError as exc:
            unparsable.append(f"{file}: {where}: {exc}\n    {expr}")
            continue
        for name in names:
            used[name].add(f"{file}: {where}")
    return used, unparsable


def _allowed(name: str, recorded: set[str]) -> bool:
    return (name in CATALOG_SERIES or name in recorded or name in ALLOWED_NAMES
            or name.startswith(ALLOWED_PREFIXES))


def test_there_is_something_to_check():
    assert promql_ast.DASHBOARD_FILES, "no dashboards/*.json: run `mystocks-otel render`"
    assert len(_expressions()) >= 18


def test_every_expression_parses():
    _, unparsable = _references()
    assert not unparsable, "PromQL that does not parse:\n" + "\n".join(unparsable)


def test_every_metric_name_is_known():
    used, _ = _references()
    recorded = promql_ast.recorded_names()
    if not promql_ast.RULE_FILES:
        # Rules not rendered yet: names with a colon are recording rules by Prometheus'
        # convention and cannot be verified; everything else is still checked strictly.
        pending = sorted(name for name in used if ":" in name)
        warnings.warn(f"alerts/rules/ is empty: recording-rule names not verified: {pending}")
        recorded = set(pending)
    unknown = {name: sorted(places) for name, places in used.items() if not _allowed(name, recorded)}
    report = "\n".join(f"{name}\n    " + "\n    ".join(places) for name, places in sorted(unknown.items()))
    assert not unknown, (
        "metric names that are neither catalog series, recorded by our rules, nor allowed "
        f"({sorted(ALLOWED_NAMES)}, {ALLOWED_PREFIXES}*):\n{report}")


def test_recorded_series_defined_once():
    """Every recorded name is defined once (two rules writing one series fight each other)."""
    if not promql_ast.RULE_FILES:
        pytest.skip("alerts/rules/ has no rule files yet")
    seen: dict[str, list[str]] = defaultdict(list)
    for path in promql_ast.RULE_FILES:
        for rule in promql_ast.load_rules(path):
            if "record" in rule:
                labels = tuple(sorted((rule.get("labels") or {}).items()))
                seen[f"{rule['record']} {labels}"].append(path.name)
    twice = {key: files for key, files in seen.items() if len(files) > 1}
    assert not twice, f"recorded more than once with the same labels: {twice}"


def _watched_series() -> set[str]:
    """Catalog series referenced directly, or through the recording rules that read them."""
    used, _ = _references()
    names = set(used)
    # A panel or alert reading a recorded series watches what that rule reads (transitively).
    rule_inputs: dict[str, set[str]] = defaultdict(set)
    for path in promql_ast.RULE_FILES:
        for rule in promql_ast.load_rules(path):
            if "record" in rule:
                try:
                    rule_inputs[rule["record"]] |= promql_ast.metric_names(promql_ast.parse(str(rule["expr"])))
                except ValueError:
                    pass  # reported by test_every_expression_parses
    frontier = set(names)
    while frontier:
        name = frontier.pop()
        for inner in rule_inputs.get(name, set()) - names:
            names.add(inner)
            frontier.add(inner)
    return names


def test_every_p0_p1_metric_is_on_a_dashboard_or_alert():
    watched = _watched_series()
    unwatched = [f"{spec.priority} {spec.name} ({spec.prometheus_name})"
                 for spec in catalog.METRICS
                 if spec.priority in ("P0", "P1") and not watched & set(spec.prometheus_series)]
    sources = ["dashboards"] + (["alerts/rules"] if promql_ast.RULE_FILES else [])
    assert not unwatched, (
        f"P0/P1 metrics no panel or alert reads (searched {' and '.join(sources)}):\n  "
        + "\n  ".join(unwatched))


def test_every_p0_metric_is_on_the_main_dashboard():
    """P0 is "critical": an on-call engineer must see it without reading rule files."""
    main = promql_ast.load_dashboard(promql_ast.ROOT / "dashboards" / "mystocks-main.json")
    names = set()
    for _, target in promql_ast.dashboard_targets(main):
        names |= promql_ast.metric_names(promql_ast.parse(target["expr"]))
    missing = [spec.name for spec in catalog.METRICS
               if spec.priority == "P0" and not names & set(spec.prometheus_series)]
    assert not missing, f"P0 metrics missing from the main dashboard: {missing}"


def test_helper_finds_names_everywhere():
    """The extractor itself: names in functions, aggregations, binary ops, subqueries and
    __name__ matchers are all found (a blind spot here would make the tests above vacuous)."""
    expr = ('histogram_quantile(0.9, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval])))'
            ' / on() group_left max_over_time(b[1h:1m]) + {__name__="c"} + {__name__=~"d|e"} - -f')
    assert promql_ast.metric_names(promql_ast.parse(expr)) == {"a_bucket", "b", "c", "d", "e", "f"}
    assert promql_ast.bare_counters(promql_ast.parse("sum(x_total) + rate(y_total[5m])")) == {"x_total"}
