"""prometheus_client's default registry, served with ours: on ``/metrics`` and over OTLP.

What prometheus-fastapi-instrumentator and many apps write to (``prometheus_client.REGISTRY``)
is appended to our ``/metrics`` page, formatted by prometheus_client itself (text 0.0.4 or
OpenMetrics, as the scrape asked). ``MYSTOCKS_OTEL_PROMETHEUS_CLIENT=false`` switches it off.

**No family name twice.** A registry family whose name, or one of whose sample names, is one
we serve already (ours and the app's OpenTelemetry instruments) is left out, with one warning
per name: ours win.

**Several workers** (our multiprocess mode):

- when the user set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own multiprocess mode,
  which must be set before the app imports prometheus_client), the families come from
  prometheus_client's ``MultiProcessCollector`` over that directory: every worker's values,
  merged by prometheus_client's rules (counters and histograms add up, dead workers included;
  gauges by their ``multiprocess_mode``; a worker our store finds dead is marked dead for
  prometheus_client too, so its ``live*`` gauges go, see :func:`forget_dead_workers`). The registry's per-process collectors (process,
  platform, GC) are not served then;
- when it is not set, each worker's registry holds only that worker's counts, and each scrape
  would show another worker's: totals that jump back and forth, read by Prometheus as counter
  resets. So nothing from the registry is served on ``/metrics``, and one warning says to set
  ``PROMETHEUS_MULTIPROC_DIR`` (or to use the OpenTelemetry API, which is exact across workers).

**OTLP:** each process pushes its own registry's values (counters as monotonic sums, gauges,
histograms; summaries and info/enum families are not sent) under the scope
``prometheus_client``; the sum over ``service.instance.id`` is the total, as for ours.
"""

from __future__ import annotations

import logging
import os
import time

from . import server_log

_log = logging.getLogger(__name__)
SCOPE_NAME = "prometheus_client"
_warned: set[str] = set()
_STARTED_NS = time.time_ns()


def _warn_once(key: str, message: str, *args, exc_info=False) -> None:
    if key not in _warned:
        _warned.add(key)
        server_log.log(logging.WARNING, message % args if args else message, _log, exc_info=exc_info)


def multiproc_dir() -> str | None:
    """prometheus_client's multiprocess directory, when the user set one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def _families(multiprocess: bool) -> list:
    """The registry's metric families (prometheus_client's objects), or [] when not served."""
    try:
        import prometheus_client
    except ImportError:
        return []
    if not multiprocess:
        return list(prometheus_client.REGISTRY.collect())
    directory = multiproc_dir()
    if not directory:
        _warn_once("\0multiprocess", (
            "mystocks-otel: several workers and no PROMETHEUS_MULTIPROC_DIR: prometheus_client's "
            "registry holds one worker's values, so it is not served on /metrics (set "
            "PROMETHEUS_MULTIPROC_DIR before start-up, or use the OpenTelemetry API)"))
        return []
    from prometheus_client.multiprocess import MultiProcessCollector

    try:
        return list(MultiProcessCollector(None, path=directory).collect())
    except (OSError, ValueError) as exc:
        _warn_once("\0multiprocess-error", "mystocks-otel: PROMETHEUS_MULTIPROC_DIR=%s: %s",
                   directory, exc)
        return []


def forget_dead_workers(pids) -> None:
    """prometheus_client's ``mark_process_dead`` for workers our store found dead (their flock
    released), so their ``live*`` gauges leave the merge, with no ``child_exit`` hook to
    configure (uvicorn has none). A PID already taken by a new process is left alone."""
    from . import state

    current = state.provider()
    directory = multiproc_dir()
    if not directory or current is None or not current.settings.prometheus_client_registry:
        return
    try:
        from prometheus_client.multiprocess import mark_process_dead
    except ImportError:
        return
    for pid in pids:
        if _running(pid):
            continue  # reused: those files may be a live process's now
        try:
            mark_process_dead(pid, directory)
        except OSError:
            pass


def _running(pid: int) -> bool:
    """A live process has ``pid`` (not a zombie: a SIGKILLed worker its server has not reaped
    yet is dead, and its PID cannot be reused before the reaping)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kept(families: list, taken: set[str]) -> list:
    """``families`` less those whose family or sample names we serve already (one warning each)."""
    out = []
    for family in families:
        names = {family.name} | {sample.name for sample in family.samples}
        clash = names & taken
        if clash:
            _warn_once(family.name, "mystocks-otel: prometheus_client's %s is also one of ours "
                       "(%s); ours is served", family.name, sorted(clash)[0])
            continue
        out.append(family)
    return out


class _Families:
    """A registry-shaped object over a fixed list (prometheus_client's formatters want one)."""

    def __init__(self, families: list):
        self._families = families

    def collect(self):
        return iter(self._families)


def render(settings, openmetrics: bool, taken: set[str], multiprocess: bool = False) -> str:
    """The registry's families as text for our page, without a trailing ``# EOF``."""
    if not settings.prometheus_client_registry:
        return ""
    try:
        families = kept(_families(multiprocess), taken)
        if not families:
            return ""
        if openmetrics:
            from prometheus_client.openmetrics.exposition import generate_latest
        else:
            from prometheus_client.exposition import generate_latest
        text = generate_latest(_Families(families)).decode()
    except Exception:  # noqa: BLE001 - a broken collector of the app's must not break our page
        _warn_once("\0render", "mystocks-otel: prometheus_client's registry left off /metrics",
                   exc_info=True)
        return ""
    if openmetrics and text.endswith("# EOF\n"):
        text = text[:-len("# EOF\n")]
    return text


# -- OTLP ----------------------------------------------------------------------------------------

def otlp_metrics(settings, taken: set[str]) -> list:
    """This process's registry as SDK ``Metric`` objects (cumulative), for the OTLP export."""
    if not settings.prometheus_client_registry:
        return []
    try:
        import prometheus_client
    except ImportError:
        return []
    try:
        families = kept(list(prometheus_client.REGISTRY.collect()), taken)
    except Exception:  # noqa: BLE001 - a broken collector of the app's must not stop our export
        _warn_once("\0otlp", "mystocks-otel: prometheus_client's registry left out of the OTLP "
                   "export", exc_info=True)
        return []
    now = time.time_ns()
    out = []
    for family in families:
        try:
            metric = _to_metric(family, now)
        except Exception:  # noqa: BLE001 - one odd family must not stop the export
            _log.debug("mystocks-otel: %s not exported", family.name, exc_info=True)
            continue
        if metric is not None:
            out.append(metric)
    return out


def _attributes(labels: dict) -> dict:
    return {k: v for k, v in labels.items() if k not in ("le", "quantile")}


def _key(labels: dict) -> tuple:
    return tuple(sorted(_attributes(labels).items()))


def _to_metric(family, now: int):
    from opentelemetry.sdk.metrics.export import (AggregationTemporality, Gauge, Histogram, Metric,
                                                  NumberDataPoint, Sum)

    cumulative = AggregationTemporality.CUMULATIVE
    created = {_key(s.labels): int(s.value * 1e9) for s in family.samples
               if s.name.endswith("_created")}
    if family.type == "counter":
        points = [NumberDataPoint(_attributes(s.labels), created.get(_key(s.labels), _STARTED_NS),
                                  now, s.value)
                  for s in family.samples if s.name.endswith("_total")]
        data = Sum(points, cumulative, True)
    elif family.type in ("gauge", "unknown"):
        points = [NumberDataPoint(_attributes(s.labels), _STARTED_NS, now, s.value)
                  for s in family.samples]
        data = Gauge(points)
    elif family.type == "histogram":
        data = Histogram(_histogram_points(family, created, now), cumulative)
    else:  # summary, info, stateset, gaugehistogram: no faithful OTLP shape
        return None
    if not data.data_points:
        return None
    return Metric(family.name, family.documentation, family.unit or "", data)


def _histogram_points(family, created: dict, now: int) -> list:
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    series: dict[tuple, dict] = {}
    for sample in family.samples:
        key = _key(sample.labels)
        entry = series.setdefault(key, {"buckets": [], "sum": 0.0, "count": 0,
                                        "attributes": _attributes(sample.labels)})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = int(sample.value)
    points = []
    for key, entry in series.items():
        buckets = sorted(entry["buckets"])
        bounds = [le for le, _ in buckets if le != float("inf")]
        counts, previous = [], 0.0
        for _, cumulative in buckets:
            counts.append(int(cumulative - previous))
            previous = cumulative
        points.append(HistogramDataPoint(
            attributes=entry["attributes"], start_time_unix_nano=created.get(key, _STARTED_NS),
            time_unix_nano=now, count=entry["count"], sum=entry["sum"], bucket_counts=counts,
            explicit_bounds=bounds, min=None, max=None, exemplars=[]))
    return points
