"""The live suite: the whole stack (``mystocks-otel stack up --test-overlay``) and real faults.

One stack serves the session. Each scenario breaks something real (a fault switch of the demo,
a stopped Redis/PostgreSQL/Collector, a bad client), then watches Prometheus and the
notification sink; the detection times are collected into one table, printed at the end of
the run and written to ``detection.json`` beside the stack's folder.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from support import wait_until
from live_support import DETECTIONS, REPORT, LiveStack, Traffic

from mystocks_otel_dev.stack import runner


@pytest.fixture(scope="session")
def stack(tmp_path_factory, alertmanager_binary, prometheus_binary):
    workdir = tmp_path_factory.mktemp("live") / "stack"
    traffic, thread = None, None
    try:
        assert runner.up(workdir, test_overlay=True) == 0, f"stack up failed: logs in {workdir / 'logs'}"
        live = LiveStack(workdir)
        traffic = Traffic(live.demo)
        thread = threading.Thread(target=traffic.run, daemon=True)
        thread.start()
        live.traffic = traffic
        # Every target scraped by both replicas before any scenario starts.
        wait_until(lambda: all(len(live.query("up == 1", r)) >= 6 for r in ("a", "b")), 60,
                   "both replicas scraping every target", interval=0.5)
        yield live
    finally:
        if traffic is not None:
            traffic.stop_event.set()
            thread.join(5)
        (workdir.parent / "detection.json").write_text(json.dumps(DETECTIONS, indent=2))
        # MYSTOCKS_DETECTION_OUT=mixin/mystocks_otel_mixin/docs/detection-times.json keeps a run for docs/ALERTING.md.
        if os.environ.get("MYSTOCKS_DETECTION_OUT"):
            Path(os.environ["MYSTOCKS_DETECTION_OUT"]).write_text(json.dumps(DETECTIONS, indent=2) + "\n")
        runner.down(workdir)


def pytest_terminal_summary(terminalreporter):
    if not DETECTIONS:
        return
    write = terminalreporter.write_line
    write("")
    write("Detection time: fault -> first notification at the sink (test overlay), and the")
    write("same alert under production intervals (15 s scrape and evaluation, the rules' for, routing waits)")
    header = f"{'category':<12} {'alert':<38} {'prio':<4} {'measured':>8} {'bound':>6} {'prod est':>8}  receivers (dups)"
    write(header)
    for d in DETECTIONS:
        write(f"{d['category']:<12} {d['alert']:<38} {d['priority']:<4} {d['measured']:>7.1f}s "
              f"{d['bound']:>5.0f}s {d['production']:>7.0f}s  {','.join(d['receivers'])} ({d['duplicates']})")
    p0 = [d["production"] for d in DETECTIONS if d["priority"] == "P0" and not d["category"].startswith("ha")]
    if p0:
        write(f"P0 MTTD under production intervals: {sum(p0) / len(p0):.0f} s over {len(p0)} scenarios")
    if "panels" in REPORT:
        write(f"Dashboard panels returning live data: {REPORT['panels']}")
