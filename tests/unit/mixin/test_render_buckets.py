"""Issue 14 point 7: the rules' HTTP latency thresholds fall on a bucket boundary, checked at
`mystocks-otel render` time against ``http_buckets`` (default: the catalog's LATENCY_BUCKETS,
what MYSTOCKS_OTEL_HTTP_BUCKETS defaults to)."""

from __future__ import annotations

import pytest

from mystocks_otel import catalog
from mystocks_otel.cli import main
from mystocks_otel_mixin import config, render, rules


def _render(tmp_path, capsys, *sets: str) -> tuple[int, str]:
    args = ["render", "--root", str(tmp_path)]
    for item in sets:
        args += ["--set", item]
    code = main(args)
    return code, capsys.readouterr().err


def test_the_default_buckets_are_the_catalogs_and_hold_every_threshold():
    assert config.DEFAULT.http_buckets == catalog.LATENCY_BUCKETS
    render.check_http_buckets(config.DEFAULT)
    names = [name for name, _ in render.latency_thresholds(config.DEFAULT)]
    assert names == ["thresholds.api_latency_p95_warning_seconds", "thresholds.api_latency_p95_critical_seconds",
                     "slos.api-latency threshold"]


def test_render_refuses_a_threshold_between_buckets(tmp_path, capsys):
    code, err = _render(tmp_path, capsys, "http_buckets=0.1,0.5,1")
    assert code == 2
    assert err.count("\n") == 1, err  # one line
    assert "thresholds.api_latency_p95_critical_seconds=2.5" in err and "http_buckets=0.1,0.5,1" in err
    assert not (tmp_path / rules.SLO_FILE).exists()  # nothing written


def test_render_refuses_an_slo_threshold_between_buckets(tmp_path, capsys):
    code, err = _render(tmp_path, capsys, "http_buckets=0.25,0.5,2.5",
                        "thresholds.api_latency_p95_warning_seconds=0.5")
    assert code == 2 and "slos.api-latency threshold=1 " in err and "http_buckets=0.25,0.5,2.5" in err, err


def test_render_accepts_buckets_that_hold_the_thresholds(tmp_path, capsys):
    code, err = _render(tmp_path, capsys, "http_buckets=0.1,0.5,1,2.5")
    assert code == 0, err
    assert (tmp_path / rules.SLO_FILE).exists()
    assert main(["render", "--root", str(tmp_path), "--set", "http_buckets=0.1,0.5,1,2.5", "--show-config"]) == 0
    assert "http_buckets=0.1,0.5,1.0,2.5" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0.5,0.1", "0,1", "", "a,b"])
def test_bad_buckets_are_one_line_errors(tmp_path, capsys, value):
    code, err = _render(tmp_path, capsys, f"http_buckets={value}")
    assert code == 2 and err.count("\n") == 1 and "http_buckets" in err, err
