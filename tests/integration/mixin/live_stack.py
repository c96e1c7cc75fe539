"""Real servers for the dashboard and long-term-store tests (a helper module, not a test):
a synthetic /metrics built from the catalog, Prometheus and VictoriaMetrics on free ports
(started and stopped by the process harness, ``mystocks_otel_dev.stack.processes``).

In the synthetic /metrics every catalog metric appears with every bounded label value, and counters grow with each
scrape, so rates are non-zero. ``/openmetrics`` serves the same in OpenMetrics with an
exemplar (``EXEMPLAR_TRACE_ID``) on every histogram bucket, as the application does when
tracing is on and Prometheus asks for OpenMetrics.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml
from support import wait_until

from mystocks_otel import catalog
from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes


#: Values for labels the catalog leaves unbounded, chosen as the application would set them.
SAMPLE_VALUES = {
    "http.response.status_code": ("200", "404", "500"),
    "http.route": ("/api/v1/quotes/{symbol}",),
    "db.client.connection.pool.name": ("postgresql/test",),
    "pool": ("postgresql/test",),
    "namespace": ("/ws/quotes",),
    "table": ("quotes",),
    "mountpoint": ("/",),
    "metric": ("mystocks.cache.hits",),
}
MAX_COMBINATIONS = 64
EXEMPLAR_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def label_sets(spec: catalog.MetricSpec) -> list[dict[str, str]]:
    choices = []
    for lbl in spec.labels:
        values = sorted(lbl.values - {catalog.OTHER}) if lbl.values else list(SAMPLE_VALUES.get(lbl.key, ("x",)))
        choices.append([(lbl.prometheus_name, v) for v in values])
    return [dict(combo) for combo in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]


def catalog_exposition(tick: int, openmetrics: bool = False) -> str:
    """The text exposition (or OpenMetrics with exemplars) of every catalog metric at ``tick``."""
    lines = ['target_info{service_name="mystocks-api"} 1']
    now = time.time()
    for spec in catalog.METRICS:
        name = spec.prometheus_name
        lines.append(f"# TYPE {name.removesuffix('_total') if spec.kind is catalog.Kind.COUNTER else name} "
                     f"{spec.prometheus_type}")
        for labels in label_sets(spec):
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            if spec.kind is catalog.Kind.HISTOGRAM:
                buckets = spec.buckets or (1.0,)
                for i, le in enumerate((*buckets, "+Inf")):
                    sep = "," if text else ""
                    count = tick * min(i + 1, len(buckets))
                    exemplar = ""
                    if openmetrics and le != "+Inf":
                        exemplar = f' # {{trace_id="{EXEMPLAR_TRACE_ID}"}} {float(le) / 2} {now:.3f}'
                    lines.append(f'{name}_bucket{{{text}{sep}le="{le}"}} {count}{exemplar}')
                lines.append(f"{name}_sum{{{text}}} {tick * 0.5}")
                lines.append(f"{name}_count{{{text}}} {tick * len(buckets)}")
            elif spec.kind is catalog.Kind.COUNTER:
                lines.append(f"{name}{{{text}}} {tick}")
            else:
                lines.append(f"{name}{{{text}}} 1")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


class _Exporter(http.server.BaseHTTPRequestHandler):
    ticks = itertools.count(1)

    def do_GET(self):  # noqa: N802 - http.server API
        openmetrics = self.path.startswith("/openmetrics")
        body = catalog_exposition(next(self.ticks), openmetrics).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8"
                         if openmetrics else "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve() -> Iterator[int]:
    """The exporter on a free loopback port (its port)."""
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("E", (_Exporter,), {"ticks": itertools.count(1)}))
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    try:
        yield exporter.server_port
    finally:
        exporter.shutdown()
        exporter.server_close()


# -- Prometheus --------------------------------------------------------------------------------
def get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def query(base: str, expr: str, path: str = "/api/v1/query", **params) -> dict:
    """A PromQL query; an error answer (HTTP 400/422) is returned, not raised."""
    url = f"{base}{path}?" + urllib.parse.urlencode({"query": expr, **params})
    try:
        return get(url)
    except urllib.error.HTTPError as exc:  # 400 carries the server's own error text
        return json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)}


@contextlib.contextmanager
def prometheus(binary: str, config: dict, work: Path, *flags: str) -> Iterator[str]:
    """A real Prometheus with ``config`` on a free loopback port (its base URL), run by the
    process harness (its log: ``work/logs/prometheus.log``)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    with Processes(work) as procs:
        yield procs.start(processes.prometheus(work / "prometheus.yml", work / "data", None, *flags,
                                               binary=binary)).url


def wait_for_scrapes(base: str, job: str, count: int = 3) -> None:
    """Rates need two samples inside the window: wait for ``count`` scrapes of ``job``."""
    wait_until(lambda: query(base, f'count_over_time(up{{job="{job}"}}[1m]) >= {count}')["data"]["result"],
               60, f"{count} scrapes of {job}")


# -- VictoriaMetrics ---------------------------------------------------------------------------
@contextlib.contextmanager
def victoriametrics(binary: str, work: Path, *flags: str) -> Iterator[str]:
    """A real VictoriaMetrics on a free loopback port (its base URL), run by the process
    harness. Queries see new samples at once (``-search.latencyOffset=0s``; by default the last
    30 s are hidden)."""
    with Processes(work) as procs:
        yield procs.start(processes.victoriametrics(binary, work / "vm-data", None, *flags)).url


def export(vm: str, match: str) -> list[dict]:
    """Every raw sample VictoriaMetrics holds for the series ``match`` (flushed first)."""
    urllib.request.urlopen(f"{vm}/internal/force_flush", timeout=5).read()
    url = f"{vm}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
