"""The one PromQL builder: every selector a rule or a dashboard panel writes goes through it.

It checks each metric name as it is written: a catalog series (``catalog.METRICS``; look one up
by its OTel name with :func:`metric`), a recording rule (``level:metric:operations``, checked
against the rule files by tests/unit/mixin/test_promql_consistency.py), or a self-metric of
the monitoring stack (Prometheus, Alertmanager, the Collector). A typo fails at render time,
not at 3 a.m. It also refuses ``rate()`` over a gauge and ``histogram_quantile`` over
anything but a catalog histogram's buckets.

Rules select one job (``PromQL(cfg.app_job)``, windows of 5m); dashboards select through
Grafana's variables (``PromQL.grafana("job", "instance")``: ``job=~"$job"`` and
``$__rate_interval``). The text helpers (:func:`num`, :func:`pct`, :func:`dur`) write
thresholds the same way in expressions, alert prose and panel descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mystocks_otel import catalog

#: Series the monitoring stack exports about itself: not in the catalog, still real.
EXTERNAL_NAMES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "time"})
EXTERNAL_PREFIXES = ("scrape_", "otelcol_", "prometheus_", "alertmanager_")

CATALOG_SERIES = frozenset(name for spec in catalog.METRICS for name in spec.prometheus_series)
#: Prometheus series name -> the catalog metric it belongs to.
_SPEC_OF = {name: spec for spec in catalog.METRICS for name in spec.prometheus_series}
_RECORDED = re.compile(r"^[a-z][a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")

#: Grafana's own rate window: at least 4x the scrape interval, so rate() has 2+ samples.
RATE_INTERVAL = "$__rate_interval"


class UnknownMetric(ValueError):
    """A rule or panel names a series nothing exports."""


def check_name(name: str) -> str:
    if (name in CATALOG_SERIES or name in EXTERNAL_NAMES or name.startswith(EXTERNAL_PREFIXES)
            or _RECORDED.match(name)):
        return name
    raise UnknownMetric(f"{name!r} is neither a catalog series, a recording rule nor a "
                        f"monitoring self-metric ({', '.join(EXTERNAL_PREFIXES)}*)")


def metric(otel_name: str, suffix: str = "") -> str:
    """The Prometheus series of a catalog metric by its OTel name: ``metric("mystocks.db.slow_queries")``
    is ``mystocks_db_slow_queries_total``; ``metric("http.server.request.duration", "_count")``
    its count. A metric gone from the catalog (KeyError) or a series it lacks fails loudly."""
    spec = catalog.get(otel_name)
    name = spec.prometheus_name + suffix
    if name not in spec.prometheus_series:
        raise UnknownMetric(f"{name} is not a series of {otel_name}: {spec.prometheus_series}")
    return name


def histogram(otel_name: str) -> str:
    """The base Prometheus name of a catalog histogram, for :meth:`PromQL.quantile`."""
    spec = catalog.get(otel_name)
    if spec.kind is not catalog.Kind.HISTOGRAM:
        raise UnknownMetric(f"histogram_quantile over {otel_name}, which is not a histogram")
    return spec.prometheus_name


def labels_of(otel_name: str) -> tuple[str, ...]:
    """Prometheus label names of a catalog metric (to group by exactly what it carries)."""
    return tuple(lbl.prometheus_name for lbl in catalog.get(otel_name).labels)


def num(value: float) -> str:
    """A threshold as PromQL and prose write it: 0.0144, 1, 2.5, 536870912 (no float noise)."""
    return f"{value:.6g}" if value < 1e6 else str(int(value))


def pct(ratio: float) -> str:
    """A ratio as alert texts write it: 0.8 -> "80%", 0.001 -> "0.1%"."""
    return f"{num(ratio * 100)}%"


def dur(seconds: float) -> str:
    """Seconds as Prometheus' humanizeDuration writes them: 1 -> "1s", 0.5 -> "500ms", 120 -> "2m"."""
    if seconds < 1:
        return f"{num(seconds * 1000)}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{num(seconds / 60)}m"
    return f"{num(seconds)}s"


def le_matcher(seconds: float) -> str:
    """Match a bucket bound however the exporter spelled it ("1.0" from OTel, "1" elsewhere)."""
    text = num(seconds)
    return f'le=~"{re.escape(text)}(\\\\.0)?"' if "." not in text else f'le="{text}"'


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator; 0 (not nothing) when the numerator has no series yet,
    nothing (not NaN or +Inf) when the denominator is 0."""
    return f"({numerator} or {denominator} * 0)\n/\n({denominator} > 0)"


def gated(expr: str, condition: str) -> str:
    """``(expr) and on () condition``: the whole of ``expr`` gated on a one-series condition
    (the trading session). The parentheses matter: ``and`` binds tighter than ``or``, so
    ``a or b and on () open`` gates ``b`` only."""
    return f"(\n{expr}\n)\nand on () {condition}"


def _by(op: str, by: str | Sequence[str]) -> str:
    """``sum by (a, b) `` (``sum `` without labels)."""
    labels = by if isinstance(by, str) else ", ".join(by)
    return f"{op} by ({labels}) " if labels else f"{op} "


@dataclass(frozen=True)
class PromQL:
    """Selectors restricted to one job (rules: ``PromQL(cfg.app_job)``), to Grafana's
    variables (dashboards: :meth:`grafana`), or to nothing (``PromQL()``: recorded series
    that carry their own labels)."""

    job: str | None = None
    #: The matchers every selector carries; default ``job="<job>"``.
    matchers: str | None = None
    #: The range of rate() and quantiles unless a call names its own.
    window: str = "5m"

    @classmethod
    def grafana(cls, *variables: str) -> "PromQL":
        """``name{job=~"$job", instance=~"$instance"}`` and ``rate(...[$__rate_interval])``."""
        return cls(matchers=", ".join(f'{v}=~"${v}"' for v in variables), window=RATE_INTERVAL)

    @property
    def base(self) -> str:
        if self.matchers is not None:
            return self.matchers
        return f'job="{self.job}"' if self.job else ""

    def sel(self, metric: str, extra: str = "", *, job: bool = True) -> str:
        """``metric{<base matchers>, extra}``; ``job=False`` leaves the base matchers out."""
        matchers = ", ".join(m for m in (self.base if job else "", extra) if m)
        return f"{check_name(metric)}{{{matchers}}}" if matchers else check_name(metric)

    def any_of(self, *names: str, extra: str = "") -> str:
        """``{__name__=~"a|b", <base matchers>}``: one series under either spelling (the
        Collector's counters gained ``_total`` in newer releases)."""
        alternatives = "|".join(check_name(n) for n in names)
        matchers = ", ".join(m for m in (f'__name__=~"{alternatives}"', self.base, extra) if m)
        return f"{{{matchers}}}"

    def rate(self, metric: str, window: str | None = None, extra: str = "") -> str:
        """A counter (or a histogram's _count/_bucket) under rate(); a gauge is refused."""
        spec = _SPEC_OF.get(metric)
        if spec is not None and metric == spec.prometheus_name and spec.kind is not catalog.Kind.COUNTER:
            raise ValueError(f"rate() over {metric}, which is a {spec.kind.value}, not a counter")
        return f"rate({self.sel(metric, extra)}[{window or self.window}])"

    def sum_rate(self, metric: str, by: str | Sequence[str] = "", window: str | None = None,
                 extra: str = "") -> str:
        return f"{_by('sum', by)}({self.rate(metric, window, extra)})"

    def quantile(self, q: float, metric: str, by: str | Sequence[str] = "", window: str | None = None,
                 extra: str = "") -> str:
        """A histogram quantile, always aggregated by ``le``: OTel adds labels (scope, instance)."""
        bucket = metric + "_bucket"
        spec = _SPEC_OF.get(bucket)
        if spec is not None and spec.kind is not catalog.Kind.HISTOGRAM:
            raise ValueError(f"histogram_quantile over {metric}, which is not a histogram")
        labels = by if isinstance(by, str) else ", ".join(by)
        return (f"histogram_quantile({q}, sum by ({labels + ', ' if labels else ''}le) "
                f"({self.rate(bucket, window, extra)}))")

    def agg(self, op: str, by: str | Sequence[str], metric: str, extra: str = "") -> str:
        return f"{_by(op, by)}({self.sel(metric, extra)})"

    def for_job(self, job: str) -> "PromQL":
        return PromQL(job, window=self.window)
