"""Issue 13, row 11: garbage in the OTEL_* variables the SDK reads itself is reported.

Before: a malformed ``OTEL_EXPORTER_OTLP_*``, ``OTEL_RESOURCE_ATTRIBUTES`` or an unresolvable
``OTEL_EXPORTER_PROMETHEUS_HOST`` was dropped silently (or with one SDK warning) and
``check-config`` said nothing. The SDK's behaviour is kept (it drops or ignores them, as
OpenTelemetry specifies): these are warnings, never a failed start.
"""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI

from mystocks_otel import config, setup_telemetry
from mystocks_otel.testing import capture_metrics

GARBAGE = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "not a url",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://collector",
    "OTEL_EXPORTER_OTLP_HEADERS": "Authorization Bearer s3cret,x=1",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "zip",
    "OTEL_EXPORTER_OTLP_ENDPIONT": "http://typo:4318",
    "OTEL_RESOURCE_ATTRIBUTES": "service.version=1,garbage",
    "OTEL_EXPORTER_PROMETHEUS_HOST": "no-such-host.invalid",
    "OTEL_EXPORTER_PROMETHEUS_PORT": "9464",
}
FINE = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x,x-scope=1",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    "OTEL_RESOURCE_ATTRIBUTES": "service.version=1,deployment.environment=prod",
    "OTEL_EXPORTER_PROMETHEUS_HOST": "localhost",
    "OTEL_EXPORTER_PROMETHEUS_PORT": "9464",
}
REPORTED = sorted(set(GARBAGE) - {"OTEL_EXPORTER_PROMETHEUS_PORT"})


@pytest.fixture
def environment(monkeypatch):
    import os

    for variable in list(os.environ):
        if variable.startswith(("OTEL_", "MYSTOCKS_OTEL_")):
            monkeypatch.delenv(variable)

    def set_all(values: dict) -> None:
        for variable, value in values.items():
            monkeypatch.setenv(variable, value)

    return set_all


def test_check_config_reports_each_variable(environment, capsys):
    from mystocks_otel import cli

    environment(GARBAGE)
    assert cli.main(["check-config"]) == 0  # the SDK goes on without them: warnings, not errors
    out = capsys.readouterr().out
    warned = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert sorted(line.split()[1].split("=")[0] for line in warned) == REPORTED, warned
    assert "s3cret" not in out  # a header may hold a credential
    assert f"{len(REPORTED)} warnings" in out


def test_sane_values_are_not_reported(environment, capsys):
    from mystocks_otel import cli

    environment(FINE)
    assert config.advisories() == []
    assert cli.main(["check-config"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_start_up_warns_once_per_variable_in_one_line(environment, caplog):
    environment({k: v for k, v in GARBAGE.items() if k != "OTEL_EXPORTER_PROMETHEUS_PORT"})
    with capture_metrics(), caplog.at_level(logging.WARNING):
        setup_telemetry(FastAPI())
        setup_telemetry(FastAPI())  # a second app: no second warning
    ours = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mystocks-otel: OTEL_")]
    expected = [v for v in REPORTED if v != "OTEL_EXPORTER_PROMETHEUS_HOST"]  # no port: harmless
    assert sorted(m.split("=")[0].removeprefix("mystocks-otel: ") for m in ours) == expected, ours
    assert all("\n" not in m for m in ours)
