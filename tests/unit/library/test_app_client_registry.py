"""prometheus_client's default registry with ours: served on /metrics (text and OpenMetrics), a
name ours serves left out once with one warning, the switch off, and the OTLP conversion.

prometheus_client's REGISTRY is process-wide: each case runs in a fresh interpreter, through
the app's real door (setup_telemetry on a FastAPI app, GET /metrics in-process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

SCRIPT = textwrap.dedent("""
    import json, logging, os, sys
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import prometheus_client
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    import mystocks_otel

    gadgets = prometheus_client.Counter("shop_gadgets_sold", "Gadgets sold.", ["color"])
    gadgets.labels("red").inc(3)
    depth = prometheus_client.Gauge("shop_queue_depth", "Queue depth.")
    depth.set(4)
    latency = prometheus_client.Histogram("shop_wait_seconds", "Wait.", buckets=[0.1, 1.0])
    latency.observe(0.5)
    # a family one of ours already serves: ours win
    clash = prometheus_client.Counter("mystocks_trading_orders", "Not ours.", ["x"])
    clash.labels("y").inc(100)

    app = FastAPI()
    mystocks_otel.setup_telemetry(app, system_metrics=False, **json.loads(sys.argv[1]))
    mystocks_otel.record_order("buy", "market", "filled")
    client = TestClient(app)
    text = client.get("/metrics").text
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text
    client.get("/metrics")

    from mystocks_otel._internal import client_registry
    from mystocks_otel._internal.state import provider
    otlp = {m.name: [type(m.data).__name__, [(dict(p.attributes), getattr(p, "value", None),
                                               getattr(p, "count", None)) for p in m.data.data_points]]
            for m in client_registry.otlp_metrics(provider().settings, {"mystocks_trading_orders_total"})}
    print(json.dumps({"text": text, "openmetrics": openmetrics, "otlp": otlp}))
""")


def run(**options) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(options)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="module")
def default_run() -> tuple[dict, str]:
    """One interpreter with the default settings, shared by the tests that read it."""
    return run()


def samples(text: str, parse=text_string_to_metric_families) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse(text) for s in family.samples}


def test_the_registry_is_served_with_ours_and_a_clash_goes_to_ours(default_run):
    found, stderr = default_run
    got = samples(found["text"])
    assert got[("shop_gadgets_sold_total", (("color", "red"),))] == 3
    assert got[("shop_queue_depth", ())] == 4
    assert got[("shop_wait_seconds_bucket", (("le", "1.0"),))] == 1
    assert "python_info" in found["text"]  # the registry's default collectors too
    # ours, not the registry's 100
    orders = [v for (name, labels), v in got.items() if name == "mystocks_trading_orders_total"]
    assert orders == [1]
    names = [line.split()[2] for line in found["text"].splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert stderr.count("prometheus_client's mystocks_trading_orders is also one of ours") == 1
    # OpenMetrics: one page, one # EOF, parsed by prometheus_client's strict parser
    assert found["openmetrics"].count("# EOF") == 1
    om = samples(found["openmetrics"], parse_openmetrics)
    assert om[("shop_gadgets_sold_total", (("color", "red"),))] == 3


def test_the_switch_leaves_the_registry_off():
    found, _ = run(prometheus_client_registry=False)
    assert "shop_gadgets_sold" not in found["text"] and "python_info" not in found["text"]
    assert "mystocks_trading_orders_total" in found["text"]
    assert found["otlp"] == {}


def test_the_registry_over_otlp(default_run):
    found, _ = default_run
    otlp = found["otlp"]
    assert otlp["shop_gadgets_sold"] == ["Sum", [[{"color": "red"}, 3.0, None]]]
    assert otlp["shop_queue_depth"] == ["Gauge", [[{}, 4.0, None]]]
    assert otlp["shop_wait_seconds"][0] == "Histogram"
    assert otlp["shop_wait_seconds"][1][0][2] == 1
    assert "mystocks_trading_orders" not in otlp  # ours win over OTLP too


def test_a_broken_collector_of_the_apps_leaves_the_registry_out_and_raises_nothing():
    """It would otherwise fail the whole OTLP join (our histograms with it) and our page."""
    import prometheus_client

    from mystocks_otel._internal import client_registry

    class Broken:
        def describe(self):  # registered without a first collect()
            return []

        def collect(self):
            raise RuntimeError("the app's bug")

    settings = types.SimpleNamespace(prometheus_client_registry=True)
    broken = Broken()
    prometheus_client.REGISTRY.register(broken)
    try:
        assert client_registry.otlp_metrics(settings, set()) == []
        assert client_registry.render(settings, False, set()) == ""
    finally:
        prometheus_client.REGISTRY.unregister(broken)
    assert client_registry.otlp_metrics(settings, set())  # the registry's own collectors again


def test_a_killed_worker_not_yet_reaped_counts_as_dead_for_prometheus_client():
    """A SIGKILLed worker stays a zombie until its server reaps it; its PID cannot be reused
    meanwhile, so its prometheus_client files are marked dead (its live gauges go) then too."""
    from mystocks_otel._internal import client_registry
    from support import wait_until

    assert client_registry._running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie
    try:
        wait_until(lambda: not client_registry._running(child.pid), what="the child a zombie")
        assert os.path.exists(f"/proc/{child.pid}")  # still there, as a zombie
    finally:
        child.wait()
    assert not client_registry._running(child.pid)
