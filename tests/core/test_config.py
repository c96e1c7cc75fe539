import subprocess
import sys

import pytest

from mystocks_otel import config
from mystocks_otel.config import ConfigError

BAD = [
    ("OTEL_METRICS_EXPORTER", "bogus", "prometheus, otlp, prometheus,otlp or none"),
    ("OTEL_METRICS_EXPORTER", "none,otlp", "prometheus, otlp"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "abc", "positive number of seconds"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "-1", "positive number of seconds"),
    ("MYSTOCKS_OTEL_CARDINALITY_LIMIT", "20000", "integer from 1 to 10000"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "integer"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000", "integer from 1 to 65535"),
    ("OTEL_TRACES_EXPORTER", "jaeger", "none, otlp, console"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
    ("MYSTOCKS_OTEL_SYSTEM_METRICS", "maybe", "true or false"),
    ("MYSTOCKS_OTEL_DB_TABLES", "quotes;drop", "comma-separated list of table names"),
    ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "(unclosed", "regular expressions"),
]


@pytest.mark.parametrize("variable,value,expected", BAD)
def test_bad_value_names_variable_and_accepted_form_in_one_line(variable, value, expected):
    with pytest.raises(ConfigError) as info:
        config.load({variable: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{variable}={value!r} is invalid: expected")
    assert expected in message
    assert info.value.variable == variable


def test_defaults():
    settings = config.load({})
    assert settings.metrics_exporters == ("prometheus",)
    assert settings.export_interval_ms == 15_000  # SPEC: data no more than 30 s old
    assert settings.cardinality_limit == 2000
    assert settings.prometheus_port is None
    assert not settings.tracing_enabled
    assert settings.service_name is None  # OpenTelemetry's convention decides (the resource)


def test_values_are_parsed():
    settings = config.load({
        "OTEL_METRICS_EXPORTER": "prometheus, otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": "0.25",
        "MYSTOCKS_OTEL_CARDINALITY_LIMIT": "10000",
        "MYSTOCKS_OTEL_DB_TABLES": "quotes, orders",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "svc",
    })
    assert settings.metrics_exporters == ("prometheus", "otlp")
    assert settings.export_interval_ms == 5000
    assert settings.slow_query_seconds == 0.25
    assert settings.cardinality_limit == 10000
    assert settings.db_tables == {"quotes", "orders"}
    assert settings.tracing_enabled and settings.service_name == "svc"
    assert config.load({"OTEL_METRICS_EXPORTER": "none"}).metrics_exporters == ()


def test_unknown_setup_option_is_a_config_error():
    with pytest.raises(ConfigError, match="setup_telemetry option"):
        config.load({}).with_overrides(slow_query=1)


def test_every_variable_is_documented_in_the_readme(pytestconfig):
    readme = (pytestconfig.rootpath / "README.md").read_text()
    missing = [v for v in config.VARIABLES if f"`{v}`" not in readme]
    assert not missing, f"README's variable table lacks {missing}"


def test_import_never_fails_even_with_bad_configuration():
    env = {"OTEL_METRICS_EXPORTER": "bogus", "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": "abc",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", "import mystocks_otel; print('ok')"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
