"""OTLP push from several workers into one receiver: each worker has its own
``service.instance.id``, and the sum over instances of each one's latest cumulative value
is exact. Under uvicorn ``--workers 3`` (spawned workers) and gunicorn ``--preload`` (the
provider is built in the arbiter, then forked)."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from harness import UVICORN, VENV_BIN, base_env, run_process
from otlp_servers import RecordingCollector
from support import free_port, wait_until

pytestmark = pytest.mark.live

WORKERS = 3
BATCH = 30  # requests per round; rounds go on until at least two workers served some
ROUTE = "/ping/{n}"
CUMULATIVE = 2  # opentelemetry.proto AggregationTemporality

APP = '''
from fastapi import FastAPI
import mystocks_otel

app = FastAPI()
mystocks_otel.setup_telemetry(app)
# Once per process that imports the app: each uvicorn worker; gunicorn's arbiter under --preload.
mystocks_otel.record_order("buy", "market", "accepted")


@app.get("/ping/{n}")
def ping(n: int):
    return {"n": n}
'''


def latest_per_instance(collector: RecordingCollector, metric: str, route: str | None = None):
    """{service.instance.id: the latest cumulative value} of ``metric`` (a histogram's count,
    a counter's value), over the points whose http.route is ``route`` when given."""
    latest: dict[str, tuple[int, float]] = {}
    for request in collector.snapshot():
        for rm in request.resource_metrics:
            resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
            instance = resource["service.instance.id"]
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    data = m.histogram if m.HasField("histogram") else m.sum
                    assert data.aggregation_temporality == CUMULATIVE, m.name
                    points = [p for p in data.data_points
                              if route is None or any(kv.key == "http.route"
                                                      and kv.value.string_value == route
                                                      for kv in p.attributes)]
                    if not points:
                        continue
                    when = max(p.time_unix_nano for p in points)
                    value = sum(p.count if m.HasField("histogram") else (p.as_double or p.as_int)
                                for p in points)
                    if when >= latest.get(instance, (0, 0))[0]:
                        latest[instance] = (when, value)
    return {instance: value for instance, (_, value) in latest.items()}


def instances(collector: RecordingCollector) -> set[str]:
    return {r["service.instance.id"] for r in collector.resource_attributes()}


def send_requests(port: int, count: int, threads: int = 6) -> None:
    """``count`` GETs, each on a new connection, from several threads: every worker gets some."""
    numbers = iter(range(count))
    lock = threading.Lock()
    failures = []

    def run():
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping/{n}", timeout=10) as r:
                    assert r.status == 200
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                failures.append(error)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not failures, failures[:3]


def app_env(tmp_path: Path, endpoint: str) -> dict:
    (tmp_path / "workers_app.py").write_text(APP)
    return base_env(tmp_path, OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                    OTEL_METRIC_EXPORT_INTERVAL="300", OTEL_SERVICE_NAME="workers-itest",
                    MYSTOCKS_OTEL_SYSTEM_METRICS="false")


def summed_exactly(collector, sent: int) -> dict[str, float]:
    """{instance: requests} once the latest values of all instances add up to ``sent``."""
    served = latest_per_instance(collector, "http.server.request.duration", ROUTE)
    return served if sum(served.values()) == sent else {}


def send_until_spread(port: int, collector, proc) -> tuple[int, dict[str, float]]:
    """Rounds of requests until two workers or more served some; each round must sum exactly."""
    sent = 0
    for _ in range(10):
        send_requests(port, BATCH)
        sent += BATCH
        served = wait_until(lambda: summed_exactly(collector, sent),
                            what=f"{sent} requests summed over instances", proc=proc)
        if len(served) >= 2:
            break
    return sent, served


def test_uvicorn_workers_push_with_their_own_instance_ids_and_sum_exactly(tmp_path):
    port = free_port()
    with RecordingCollector() as collector:
        argv = [UVICORN, "workers_app:app", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(WORKERS), "--no-access-log"]
        with run_process(argv, tmp_path, app_env(tmp_path, collector.endpoint)) as proc:
            proc.wait_port(port)
            wait_until(lambda: len(instances(collector)) == WORKERS, what="every worker pushed",
                       proc=proc.proc)
            sent, served = send_until_spread(port, collector, proc.proc)
            # each spawned worker imported the app once, and its pushes carry that count: polled,
            # since a loaded machine can delay a worker's export after its first (seen in CI)
            wait_until(lambda: sum(latest_per_instance(collector, "mystocks.trading.orders").values())
                       >= WORKERS, what="every worker's import-time order pushed", proc=proc.proc)
            orders = latest_per_instance(collector, "mystocks.trading.orders")
        assert len(instances(collector)) == WORKERS  # one id per worker, and no other
        assert len(served) >= 2, served  # the requests really were spread
        assert sum(served.values()) == sent
        assert orders == {instance: 1 for instance in instances(collector)}, orders


def test_gunicorn_preload_forks_a_built_provider_and_still_sums_exactly(tmp_path):
    port = free_port()
    with RecordingCollector() as collector:
        argv = [str(VENV_BIN / "gunicorn"), "workers_app:app", "--preload",
                "-k", "uvicorn.workers.UvicornWorker", "-w", str(WORKERS),
                "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]
        with run_process(argv, tmp_path, app_env(tmp_path, collector.endpoint)) as proc:
            proc.wait_port(port)
            # the arbiter set up before forking: it pushes too, under an id of its own
            wait_until(lambda: len(instances(collector)) == WORKERS + 1,
                       what="the arbiter and every worker pushed", proc=proc.proc)
            sent, served = send_until_spread(port, collector, proc.proc)
            orders = latest_per_instance(collector, "mystocks.trading.orders")
        assert len(instances(collector)) == WORKERS + 1
        assert len(served) >= 2, served
        assert sum(served.values()) == sent
        # recorded once, in the arbiter before the fork: the workers must not count it again
        assert sum(orders.values()) == 1, orders
        assert not set(orders) & set(served)  # the arbiter's, which serves no request
