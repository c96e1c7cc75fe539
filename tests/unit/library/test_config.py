import subprocess
import sys

import pytest

from mystocks_otel import config
from mystocks_otel.config import ConfigError

BAD = [
    ("OTEL_METRICS_EXPORTER", "bogus", "prometheus, otlp, prometheus,otlp or none"),
    ("OTEL_METRICS_EXPORTER", "none,otlp", "prometheus, otlp"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "abc", "number of seconds from 0.001 to 3600"),
    ("MYSTOCKS_OTEL_SLOW_QUERY_SECONDS", "-1", "number of seconds from 0.001 to 3600"),
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


# -- mystocks-otel check-config and the CLI's help ------------------------------------------

def test_check_config_prints_a_table_of_values_and_sources_never_the_token(monkeypatch, capsys):
    from mystocks_otel import cli

    for variable in config.VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MYSTOCKS_OTEL_METRICS_TOKEN", "s3cret-token")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus,otlp")
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-token" not in out and "Settings(" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.startswith(("OTEL_", "MYSTOCKS_"))}
    assert set(rows) == set(config.VARIABLES)
    assert rows["MYSTOCKS_OTEL_METRICS_TOKEN"][-1] == "env" and "(set, hidden)" in " ".join(rows["MYSTOCKS_OTEL_METRICS_TOKEN"])
    assert rows["OTEL_METRICS_EXPORTER"][1:] == ["prometheus,otlp", "env"]
    assert rows["MYSTOCKS_OTEL_CARDINALITY_LIMIT"][1:] == ["2000", "default"]
    assert out.splitlines()[0].split() == ["variable", "value", "source"]


def test_check_config_fails_with_one_line_on_a_bad_value(monkeypatch, capsys):
    from mystocks_otel import cli

    monkeypatch.setenv("MYSTOCKS_OTEL_CARDINALITY_LIMIT", "lots")
    assert cli.main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "MYSTOCKS_OTEL_CARDINALITY_LIMIT='lots'" in captured.err


def _parsers():
    import argparse

    from mystocks_otel import cli
    from mystocks_otel_dev.demo import traffic

    main = cli.build_parser()
    (commands,) = [a for a in main._actions if isinstance(a, argparse._SubParsersAction)]
    return {"mystocks-otel": main, **commands.choices, "traffic": traffic.build_parser()}


def test_every_cli_option_has_help_and_no_raw_markup():
    for name, parser in _parsers().items():
        assert "``" not in (parser.description or ""), name
        for action in parser._actions:
            if action.option_strings:
                assert action.help, f"{name} {action.option_strings[0]} has no help text"


def test_the_demo_banner_prints_a_traffic_command_that_works_outside_the_venv(tmp_path):
    import shlex
    import subprocess

    from mystocks_otel_dev.demo.server import traffic_command

    command = shlex.split(traffic_command("0.0.0.0", 8000))
    assert command[-2:] == ["--base-url", "http://127.0.0.1:8000"]
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no venv on PATH, no VIRTUAL_ENV
    proc = subprocess.run([*command, "--help"], cwd=tmp_path, env=clean, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--base-url" in proc.stdout
