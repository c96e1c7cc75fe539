"""The one PromQL builder: every selector a rule writes goes through :class:`PromQL`.

It checks each metric name as it is written: a catalog series (``catalog.METRICS``), a
recording rule (``level:metric:operations``, checked against the rule files by
tests/unit/mixin/test_promql_consistency.py), or a self-metric of the monitoring stack
(Prometheus, Alertmanager, the Collector). A typo fails at render time, not at 3 a.m.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mystocks_otel import catalog

#: Series the monitoring stack exports about itself: not in the catalog, still real.
EXTERNAL_NAMES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "time"})
EXTERNAL_PREFIXES = ("scrape_", "otelcol_", "prometheus_", "alertmanager_")

CATALOG_SERIES = frozenset(name for spec in catalog.METRICS for name in spec.prometheus_series)
_RECORDED = re.compile(r"^[a-z][a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")


class UnknownMetric(ValueError):
    """A rule names a series nothing exports."""


def check_name(name: str) -> str:
    if (name in CATALOG_SERIES or name in EXTERNAL_NAMES or name.startswith(EXTERNAL_PREFIXES)
            or _RECORDED.match(name)):
        return name
    raise UnknownMetric(f"{name!r} is neither a catalog series, a recording rule nor a "
                        f"monitoring self-metric ({', '.join(EXTERNAL_PREFIXES)}*)")


def num(value: float) -> str:
    """A threshold as PromQL writes it: 0.0144, 1, 536870912 (no float noise)."""
    return f"{value:.6g}" if value < 1e6 else str(int(value))


def pct(ratio: float) -> str:
    """A ratio as alert texts write it: 0.8 -> "80%", 0.001 -> "0.1%"."""
    return f"{num(ratio * 100)}%"


def dur(seconds: float) -> str:
    """Seconds as Prometheus' humanizeDuration writes them: 1 -> "1s", 0.5 -> "500ms"."""
    return f"{num(seconds * 1000)}ms" if seconds < 1 else f"{num(seconds)}s"


def le_matcher(seconds: float) -> str:
    """Match a bucket bound however the exporter spelled it ("1.0" from OTel, "1" elsewhere)."""
    text = num(seconds)
    return f'le=~"{re.escape(text)}(\\\\.0)?"' if "." not in text else f'le="{text}"'


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator; 0 (not nothing) when the numerator has no series yet,
    nothing (not NaN or +Inf) when the denominator is 0."""
    return f"({numerator} or {denominator} * 0)\n/\n({denominator} > 0)"


@dataclass(frozen=True)
class PromQL:
    """Selectors restricted to one job (the app's by default)."""

    job: str

    def sel(self, metric: str, extra: str = "", *, job: bool = True) -> str:
        """``metric{job="...", extra}``; ``job=False`` leaves the job out."""
        matchers = ", ".join(m for m in (f'job="{self.job}"' if job else "", extra) if m)
        return f"{check_name(metric)}{{{matchers}}}" if matchers else check_name(metric)

    def sum_rate(self, metric: str, by: str, window: str = "5m", extra: str = "") -> str:
        return f"sum by ({by}) (rate({self.sel(metric, extra)}[{window}]))"

    def quantile(self, q: float, metric: str, by: str, window: str = "5m", extra: str = "") -> str:
        return (f"histogram_quantile({q}, sum by ({by}, le) "
                f"(rate({self.sel(metric + '_bucket', extra)}[{window}])))")

    def agg(self, op: str, by: str, metric: str, extra: str = "") -> str:
        return f"{op} by ({by}) ({self.sel(metric, extra)})"

    def for_job(self, job: str) -> "PromQL":
        return PromQL(job)
