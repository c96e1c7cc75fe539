"""The app's own metrics, first class: an OpenTelemetry counter and histogram and a
prometheus_client counter, in a real app under real servers.

- ``uvicorn --workers 3`` (the one line, and ``opentelemetry-instrument``) and gunicorn
  ``--preload`` with three workers: every scrape, on
  whichever worker answers, shows exactly the calls made so far, also while requests are in
  flight (never more than sent, never going back), and after a worker that served calls was
  SIGKILLed (its counts stay);
- without ``PROMETHEUS_MULTIPROC_DIR`` the registry is left off ``/metrics`` under several
  workers (one warning), while the OpenTelemetry instruments stay exact;
- OTLP: all three reach a real receiver (through the real Collector when it is built), and the
  sum over the workers' ``service.instance.id`` is exact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import VENV_BIN, base_env, get, run_process, scrape, series, uvicorn_argv
from otlp_servers import RecordingCollector
from support import ROOT, free_port, wait_until

pytestmark = pytest.mark.live

WORKERS = 3
APP = '''
import os
import time

import prometheus_client
from fastapi import FastAPI
from opentelemetry import metrics

# Made at import, before set-up: the API's placeholder instruments get real ones at set-up.
meter = metrics.get_meter("shop")
sold = meter.create_counter("shop.widgets.sold", unit="{widget}", description="Widgets sold.")
took = meter.create_histogram("shop.sale.duration", unit="s", description="Time to sell one.",
                              explicit_bucket_boundaries_advisory=[0.001, 0.01, 0.1, 1.0])
gadgets = prometheus_client.Counter("shop_gadgets_sold", "Gadgets sold.", ["color"])
carts = prometheus_client.Gauge("shop_open_carts", "Carts open.", multiprocess_mode="livesum")

app = FastAPI()
if os.environ.get("APP_ZERO_CODE") != "1":
    import mystocks_otel

    mystocks_otel.setup_telemetry(app)


@app.get("/sell/{n}")
async def sell(n: int, block: float = 0.0):
    time.sleep(block)  # holds this worker's loop: the kernel hands the next calls to the others
    sold.add(1, {"color": "red"})
    took.record(0.005 * (n % 3), {"color": "red"})
    gadgets.labels("red").inc()
    carts.inc()
    return {"pid": os.getpid()}
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "shop_app.py").write_text(APP)
    return tmp_path


def totals(text: str) -> tuple[float, float, float]:
    """(OTel counter, OTel histogram count, prometheus_client counter) on one page."""
    sold = sum(s.value for s in series(text, "shop_widgets_sold_total"))
    took = sum(s.value for s in series(text, "shop_sale_duration_seconds_count"))
    inf = sum(s.value for s in series(text, "shop_sale_duration_seconds_bucket")
              if s.labels["le"] == "+Inf")
    assert inf == took  # merged bucket by bucket
    gadgets = sum(s.value for s in series(text, "shop_gadgets_sold_total"))
    return sold, took, gadgets


def sell(port: int, n: int) -> int:
    status, body = get(port, f"/sell/{n}?block=0.02")
    assert status == 200, body
    return json.loads(body)["pid"]


def send(port: int, start: int, count: int) -> dict[int, int]:
    """``count`` calls, six at a time (each on a new connection: the kernel spreads them)."""
    served: dict[int, int] = {}
    with ThreadPoolExecutor(6) as pool:
        for pid in pool.map(lambda n: sell(port, n), range(start, start + count)):
            served[pid] = served.get(pid, 0) + 1
    return served


class Poller:
    """Scrapes in a loop while calls are made: each page must lie between what had completed
    before the scrape began and what had started when it ended, and never go back."""

    def __init__(self, port: int):
        self.port = port
        self.started = 0  # calls sent
        self.completed = 0  # calls answered
        self.lock = threading.Lock()
        self.pages = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._last = (0.0, 0.0, 0.0)

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                low = self.completed
            try:
                found = totals(scrape(self.port))
            except Exception as error:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(error))
                return
            with self.lock:
                high = self.started
            if not all(low <= value <= high for value in found):
                self.errors.append(f"scrape {found} outside [{low}, {high}]")
            if any(a < b for a, b in zip(found, self._last)):
                self.errors.append(f"scrape {found} went back from {self._last}")
            self._last = found
            self.pages += 1

    def sell(self, n: int) -> int:
        with self.lock:
            self.started += 1
        pid = sell(self.port, n)
        with self.lock:
            self.completed += 1
        return pid

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def exact_on_every_scrape(port: int, calls: int, scrapes: int = 9) -> None:
    for _ in range(scrapes):
        assert totals(scrape(port)) == (calls, calls, calls)


def server_argv(mode: str, port: int) -> list[str]:
    if mode == "gunicorn-preload":  # set up in the arbiter, then forked
        return [str(VENV_BIN / "gunicorn"), "shop_app:app", "--preload", "-w", str(WORKERS),
                "-k", "uvicorn.workers.UvicornWorker", "-b", f"127.0.0.1:{port}",
                "--graceful-timeout", "3"]
    return uvicorn_argv("shop_app:app", port, "--workers", str(WORKERS),
                        instrument=mode == "zero-code")


@pytest.mark.parametrize("mode", ["one-line", "zero-code", "gunicorn-preload"])
def test_every_scrape_counts_every_call_across_three_workers(app_dir, mode):
    port = free_port()
    prometheus_dir = Path(tempfile.mkdtemp(dir=app_dir))
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                   PROMETHEUS_MULTIPROC_DIR=str(prometheus_dir),
                   APP_ZERO_CODE="1" if mode == "zero-code" else "0")
    with run_process(server_argv(mode, port), app_dir, env) as proc:
        proc.wait_port(port, timeout=40)
        exact_on_every_scrape(port, 0, scrapes=3)
        calls, served = 0, {}
        with Poller(port) as poller, ThreadPoolExecutor(6) as pool:
            for _ in range(4):  # rounds: calls in flight while the poller scrapes
                for pid in pool.map(poller.sell, range(calls, calls + 30)):
                    served[pid] = served.get(pid, 0) + 1
                calls += 30
                exact_on_every_scrape(port, calls)  # once answered, every worker's scrape agrees
        assert not poller.errors, poller.errors[:3]
        assert poller.pages >= 3, poller.pages
        assert len(served) >= 2, f"calls not spread over workers: {served}"
        # a worker that served calls dies: its counts stay (ours: dead.totals; prometheus_client:
        # its own files), and the replacement adds its own
        victim = max(served, key=served.get)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: _dead(victim), what=f"worker {victim} dead", proc=proc.proc)
        more = send(port, calls, 30)
        calls += 30
        assert victim not in more
        exact_on_every_scrape(port, calls)
        # prometheus_client's live gauges: the dead worker marked dead for it too (no hook set)
        # (the scrape that meets the dead worker's file first folds it; one that finds the
        # lock busy leaves it to the next: wait for that, bounded)
        wait_until(lambda: sum(s.value for s in series(scrape(port), "shop_open_carts"))
                   == calls - served[victim], what="the dead worker's live gauge gone",
                   proc=proc.proc)
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_without_prometheus_multiproc_dir_the_registry_is_left_off_under_workers(app_dir):
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = uvicorn_argv("shop_app:app", port, "--workers", str(WORKERS), instrument=False)
    with run_process(argv, app_dir, env) as proc:
        proc.wait_port(port, timeout=40)
        send(port, 0, 30)
        for _ in range(6):
            text = scrape(port)
            assert totals(text)[:2] == (30, 30)  # the OpenTelemetry instruments stay exact
            assert "shop_gadgets_sold" not in text  # one worker's share would be wrong: left off
            assert "python_info" not in text  # nothing of the per-process registry either
        wait_until(lambda: "PROMETHEUS_MULTIPROC_DIR" in proc.output(), what="the warning",
                   proc=proc.proc)
    warnings = [line for line in proc.output().splitlines() if "no PROMETHEUS_MULTIPROC_DIR" in line]
    assert 1 <= len(warnings) <= WORKERS, warnings  # once per worker at most


# -- OTLP ----------------------------------------------------------------------------------------

def built_collector() -> str | None:
    """The Collector collector/build.sh built already (never built here: minutes), else None."""
    try:
        proc = subprocess.run([str(ROOT / "collector" / "build.sh"), "--path"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""
    return path if path and os.access(path, os.X_OK) else None


COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 200ms
exporters:
  otlp_http:
    endpoint: {backend}
    compression: none
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http]
"""


def latest_per_instance(collector: RecordingCollector, name: str) -> dict[str, float]:
    """{service.instance.id: latest cumulative value} of a sum's value or a histogram's count."""
    latest: dict[str, tuple[int, float]] = {}
    for request in collector.snapshot():
        for rm in request.resource_metrics:
            instance = next(kv.value.string_value for kv in rm.resource.attributes
                            if kv.key == "service.instance.id")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    data = metric.histogram if metric.HasField("histogram") else metric.sum
                    assert data.aggregation_temporality == 2  # cumulative
                    when = max(p.time_unix_nano for p in data.data_points)
                    value = sum(p.count if metric.HasField("histogram") else (p.as_double or p.as_int)
                                for p in data.data_points)
                    if when >= latest.get(instance, (0, 0.0))[0]:
                        latest[instance] = (when, value)
    return {instance: value for instance, (_, value) in latest.items()}


def described(collector: RecordingCollector, name: str) -> tuple[str, str, str]:
    """(scope name, unit, description) of the last export of ``name``."""
    found = None
    for request in collector.snapshot():
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found = (sm.scope.name, metric.unit, metric.description)
    return found


@pytest.mark.parametrize("mode", ["one-line", "zero-code"])
def test_all_three_reach_otlp_exactly_from_three_workers(app_dir, tmp_path, mode):
    port = free_port()
    with RecordingCollector() as backend:
        otelcol = built_collector()
        with _maybe_collector(otelcol, backend, tmp_path) as endpoint:
            env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONWARNINGS="ignore",
                           OTEL_METRICS_EXPORTER="prometheus,otlp", OTEL_METRIC_EXPORT_INTERVAL="300",
                           OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                           PROMETHEUS_MULTIPROC_DIR=str(tempfile.mkdtemp(dir=app_dir)),
                           APP_ZERO_CODE="1" if mode == "zero-code" else "0")
            argv = uvicorn_argv("shop_app:app", port, "--workers", str(WORKERS),
                                instrument=mode == "zero-code")
            with run_process(argv, app_dir, env) as proc:
                proc.wait_port(port, timeout=40)
                sent, served = 0, {}
                while len(served) < 2 and sent < 300:  # until two workers or more served calls
                    for pid, count in send(port, sent, 30).items():
                        served[pid] = served.get(pid, 0) + count
                    sent += 30
                names = ("shop.widgets.sold", "shop.sale.duration", "shop_gadgets_sold")

                def exact():
                    found = {name: latest_per_instance(backend, name) for name in names}
                    return found if all(sum(v.values()) == sent for v in found.values()) else None

                found = wait_until(exact, timeout=30, what=f"{sent} calls over OTLP", proc=proc.proc)
    assert len(served) >= 2, served
    assert len(found["shop.widgets.sold"]) >= 2  # several workers' instances, summed
    assert described(backend, "shop.widgets.sold") == ("shop", "{widget}", "Widgets sold.")
    assert described(backend, "shop.sale.duration") == ("shop", "s", "Time to sell one.")
    assert described(backend, "shop_gadgets_sold") == ("prometheus_client", "", "Gadgets sold.")


class _maybe_collector:
    """The real Collector between the app and ``backend`` when it is built; else the app
    pushes straight to ``backend`` (a real OTLP/HTTP receiver either way)."""

    def __init__(self, otelcol: str | None, backend: RecordingCollector, tmp_path: Path):
        self.otelcol, self.backend, self.tmp_path = otelcol, backend, tmp_path
        self.proc = None

    def __enter__(self) -> str:
        if self.otelcol is None:
            return self.backend.endpoint
        port = free_port()
        config = self.tmp_path / "otelcol.yaml"
        config.write_text(COLLECTOR_CONFIG.format(http=port, backend=self.backend.endpoint))
        self.log = open(self.tmp_path / "otelcol.log", "wb")
        self.proc = subprocess.Popen([self.otelcol, f"--config={config}"], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        from support import port_open

        wait_until(lambda: port_open("127.0.0.1", port), what="the Collector's OTLP port",
                   proc=self.proc)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()
