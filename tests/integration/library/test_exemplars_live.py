"""Exemplars end to end: a real Prometheus 2.42 with exemplar storage scrapes a real uvicorn app
with tracing on; every trace id it returns from /api/v1/query_exemplars belongs to a span the app
really exported (to a local OTLP receiver), and the OTLP metric push carries exemplars too.
With two workers the exemplars travel through the multiprocess files."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import base_env, get, run_process, uvicorn_argv
from otlp_servers import RecordingCollector
from support import free_port, wait_until

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes

pytestmark = pytest.mark.live

APP = Path(__file__).parent / "apps" / "setup_app.py"
METRIC = "http_server_request_duration_seconds_bucket"


def prometheus_api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def stored_exemplars(port: int) -> list[dict]:
    now = time.time()
    data = prometheus_api(port, "/api/v1/query_exemplars", query=METRIC,
                          start=now - 600, end=now + 60)["data"]
    return [e for series in data for e in series["exemplars"]]


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers"])
def test_prometheus_stores_our_exemplars_and_they_match_exported_spans(tmp_path, prometheus_binary,
                                                                      workers):
    shutil.copy(APP, tmp_path / "setup_app.py")
    with RecordingCollector() as collector:
        env = base_env(tmp_path, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="prometheus,otlp",
                       OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BSP_SCHEDULE_DELAY="200",
                       OTEL_METRIC_EXPORT_INTERVAL="500", MYSTOCKS_OTEL_SYSTEM_METRICS="false",
                       MYSTOCKS_OTEL_TRACES_KEEP_RATIO="1")  # tail sampling keeps all 20 traces
        app_port, prom_port = free_port(), free_port()
        extra = ("--workers", str(workers)) if workers > 1 else ()
        with run_process(uvicorn_argv("setup_app:app", app_port, *extra, instrument=False),
                         tmp_path, env) as app:
            app.wait_port(app_port)
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{app_port}']}}]\n")
            with Processes(tmp_path / "servers") as procs:  # the one harness: stopped even on failure
                procs.start(processes.prometheus(config, tmp_path / "data", prom_port,
                                                 "--enable-feature=exemplar-storage", binary=prometheus_binary))
                for n in range(20):
                    assert get(app_port, f"/ping/{n}")[0] == 200
                exemplars = wait_until(lambda: stored_exemplars(prom_port), timeout=40,
                                       what="exemplars stored by Prometheus")
                health = prometheus_api(prom_port, "/api/v1/targets")["data"]["activeTargets"][0]
                assert health["health"] == "up", health  # the OpenMetrics page parsed cleanly
                ids = {(e["labels"]["trace_id"], e["labels"]["span_id"]) for e in exemplars}
                wait_until(lambda: ids <= collector.span_ids(), timeout=20,
                           what=f"the exemplars' spans {ids} exported")
                pushed = wait_until(lambda: collector.exemplars("http.server.request.duration"),
                                    what="exemplars pushed over OTLP")
                assert set(pushed) <= collector.span_ids()
