"""Issue 13, row 9: every numeric setting has bounds, and a dead poller makes health degraded.

Before: ``MYSTOCKS_OTEL_PROBE_INTERVAL=1e-9`` spun the poller (a quarter of a core) and ``1e308``
killed its thread with OverflowError while ``/metrics/health`` kept saying ``ok``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mystocks_otel import config, setup_telemetry
from mystocks_otel.config import ConfigError
from mystocks_otel.testing import capture_metrics
from support import wait_until

OUT_OF_BOUNDS = [
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "1e-9"),
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "1e308"),
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "nan"),
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "-1"),
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "inf"),
    ("MYSTOCKS_OTEL_PROBE_INTERVAL", "0"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "1e-9"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "1e308"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "nan"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "99"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "1_000"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "9" * 400),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "0"),
    ("MYSTOCKS_OTEL_CARDINALITY_LIMIT", "0"),
]


@pytest.mark.parametrize("variable,value", OUT_OF_BOUNDS)
def test_an_out_of_bounds_number_is_refused_with_one_line_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as info:
        config.load({variable: value})
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{variable}={value!r} is invalid: expected")
    low, high = config.NUMERIC_BOUNDS[variable][1:]
    shown = [str(int(b)) if float(b).is_integer() else f"{b:g}" for b in (low, high)]
    assert all(b in message for b in shown), message  # the expected form, with its bounds


def test_every_numeric_setting_has_bounds():
    numeric = {f.name for f in config.fields(config.Settings) if f.type in ("int", "float", "int | None")}
    assert numeric == {field for field, _, _ in config.NUMERIC_BOUNDS.values()}


def test_values_at_the_bounds_are_accepted():
    for variable, (field, low, high) in config.NUMERIC_BOUNDS.items():
        for value in (low, high):
            text = str(int(value)) if float(value).is_integer() else repr(value)
            assert getattr(config.load({variable: text}), field) == value


def test_setup_options_are_bounded_too():
    """Options are the programmer's choice (tests poll every millisecond), but never infinite,
    nan, zero or negative, nor past the upper bound."""
    for bad in (1e308, float("inf"), 0, -1):
        with pytest.raises(ConfigError, match="probe_interval_seconds"):
            config.load({}).with_overrides(probe_interval_seconds=bad)
    assert config.load({}).with_overrides(probe_interval_seconds=0.001).probe_interval_seconds == 0.001
    with pytest.raises(ConfigError, match="slow_query_seconds"):
        config.load({}).with_overrides(slow_query_seconds=float("nan"))


@pytest.mark.parametrize("value", ["1e-9", "1e308", "nan", "-1"])
def test_the_distro_stops_start_up_with_exit_2_and_one_line(value):
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    env = {"PATH": "/usr/bin:/bin", "MYSTOCKS_OTEL_PROBE_INTERVAL": value}
    proc = subprocess.run([instrument, sys.executable, "-c", "print('ran')"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "ran" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "MYSTOCKS_OTEL_PROBE_INTERVAL" in lines[0], proc.stderr


def test_a_dead_poller_makes_health_degraded():
    with capture_metrics(probe_interval_seconds=0.1, system_metrics=False):
        app = FastAPI()
        handle = setup_telemetry(app, probe_interval_seconds=0.1, system_metrics=False)
        client = TestClient(app)
        assert client.get("/metrics/health").json()["status"] == "ok"
        poller = handle.runtime.poller

        def die():
            raise SystemExit("the poller thread dies")  # not an Exception: run_once lets it through

        poller.tasks.append(die)
        wait_until(lambda: not poller._thread.is_alive(), timeout=10, what="the poller thread to die")
        report = client.get("/metrics/health").json()
        assert report["status"] == "degraded", report
        assert report["poller"]["state"] == "dead", report
