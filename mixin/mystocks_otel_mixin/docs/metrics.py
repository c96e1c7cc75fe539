"""docs/METRICS.md: every catalog metric, by domain, as Markdown tables."""

from __future__ import annotations

from collections import defaultdict

from mystocks_otel import catalog
from mystocks_otel_mixin import config
from mystocks_otel_mixin.lib.rulekit import header

HEADER = header(__name__, "<!--")


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, and a literal ``|`` escaped so it
    cannot end the cell (``idle|used`` would otherwise split a row into an extra column)."""
    return " ".join(text.split()).replace("|", "\\|")


def _labels(spec: catalog.MetricSpec) -> str:
    if not spec.labels:
        return "—"
    parts = []
    for lbl in spec.labels:
        if lbl.values:
            parts.append(f"`{lbl.prometheus_name}` ({', '.join(sorted(lbl.values))})")
        else:
            parts.append(f"`{lbl.prometheus_name}`")
    return "; ".join(parts)


def metrics_markdown() -> str:
    by_domain: dict[str, list[catalog.MetricSpec]] = defaultdict(list)
    for spec in catalog.METRICS:
        by_domain[spec.domain].append(spec)
    custom = len(catalog.custom_metrics())
    lines = [
        HEADER,
        "# Metrics\n",
        f"{len(catalog.METRICS)} metrics: {custom} custom (`mystocks_*`) and "
        f"{len(catalog.METRICS) - custom} from OpenTelemetry semantic conventions, emitted by "
        "our own layers under their OTel names. Every name below is what `/metrics` shows; "
        "`GET /metrics/list` returns the same catalog as JSON.\n",
        "Label values outside a bounded set are recorded as `other`. Each metric keeps at most "
        "`MYSTOCKS_OTEL_CARDINALITY_LIMIT` label sets; past that, measurements go to one "
        '`otel_metric_overflow="true"` series.\n',
    ]
    for domain, specs in by_domain.items():
        lines.append(f"\n## {domain}\n")
        lines.append("| Prometheus name | OTel name | type | unit | priority | updated | labels | description |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for spec in specs:
            name = spec.name + (" (semconv)" if spec.semconv else "")
            cells = (f"`{spec.prometheus_name}`", f"`{name}`", spec.kind.value, f"`{spec.unit}`",
                     spec.priority, spec.frequency, _labels(spec), spec.description)
            lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def generate(cfg: config.MixinConfig = config.DEFAULT) -> dict[str, str]:
    return {"docs/METRICS.md": metrics_markdown()}
