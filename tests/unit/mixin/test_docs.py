"""docs/METRICS.md, generated from the catalog (tests/unit/mixin/test_generated.py checks it is
current): every table row has exactly its header's columns, so a `|` in a description or label value cannot break it."""

from __future__ import annotations

import re
from pathlib import Path

from mystocks_otel import catalog
from mystocks_otel_mixin.docs import metrics

ROOT = Path(__file__).resolve().parents[3]
METRICS_MD = ROOT / "docs" / "METRICS.md"
#: A cell boundary: a pipe not escaped with a backslash (GitHub-flavoured Markdown tables).
_BOUNDARY = re.compile(r"(?<!\\)\|")


def _cells(row: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in _BOUNDARY.split(row.strip())[1:-1]]


def _tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_every_row_has_its_headers_columns():
    tables = _tables(METRICS_MD.read_text())
    assert tables
    for table in tables:
        width = len(_cells(table[0]))
        bad = [row for row in table[1:] if len(_cells(row)) != width]
        assert not bad, f"rows with other than {width} cells:\n" + "\n".join(bad)


def test_a_pipe_in_a_description_stays_in_its_cell():
    spec = catalog.get("db.client.connection.count")
    assert "|" in spec.description  # the case that broke the table
    row = next(line for line in METRICS_MD.read_text().splitlines()
               if line.startswith(f"| `{spec.prometheus_name}` |"))
    assert _cells(row)[-1] == spec.description


def test_cell_escapes_pipes_and_newlines():
    assert metrics.cell("a|b\n c") == "a\\|b c"
    assert len(_cells("| " + metrics.cell("x|y|z") + " |")) == 1


def test_the_detection_section_reads_the_package_data(tmp_path):
    """docs/ALERTING.md's live column comes from package data (importlib.resources), so an
    installed mixin renders it as a checkout does; no file, no live column, the same table."""
    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT
    from mystocks_otel_mixin.docs import detection

    assert detection.DATA.is_file(), "mystocks_otel_mixin/docs/detection-times.json is package data"
    alerts = rules.all_alerts(DEFAULT)
    text = detection.section(alerts, DEFAULT)
    assert text.startswith("## Detection time, computed from the rules") and "P0 mean time to detect" in text
    bare = detection.section(alerts, DEFAULT, live=tmp_path / "missing.json")
    assert bare != text and bare.count("| - |") > text.count("| - |")


# -- the detection table is computed from the rules (issue 15 row 14) ---------------------

def _table(alerts, cfg):
    from mystocks_otel_mixin.docs import detection

    return {(r.fault, r.alert.name): r for r in detection.rows(alerts, cfg)}


def _with_for(alerts, name, for_):
    import dataclasses

    assert any(a.name == name for a in alerts), name
    return tuple(dataclasses.replace(a, for_=for_) if a.name == name else a for a in alerts)


def test_a_rules_for_changes_the_detection_table():
    """A `for` changed in a rule moves its row and the P0 mean: the table is computed when the
    docs are rendered (and tests/unit/mixin/test_generated.py fails while docs/ALERTING.md
    still shows the old one)."""
    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT
    from mystocks_otel_mixin.docs import detection

    alerts = rules.all_alerts(DEFAULT)
    pg = next(a for a in alerts if a.name == "PostgreSQLDown")
    slower = _with_for(alerts, "PostgreSQLDown", f"{int(detection.seconds(pg.for_)) + 120}s")
    key = ("PostgreSQL goes down", "PostgreSQLDown")
    before, after = _table(alerts, DEFAULT)[key], _table(slower, DEFAULT)[key]
    assert after.expected == before.expected + 120 and after.worst == before.worst + 120
    assert detection.section(alerts, DEFAULT) != detection.section(slower, DEFAULT)


def test_an_alert_counting_alerts_waits_for_their_for():
    """ServiceDegradation fires only after the alerts it counts through ALERTS have fired: their
    `for` is part of its detection time (the review measured 14 m, where the table said 94 s)."""
    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT

    alerts = rules.all_alerts(DEFAULT)
    fault = "database queries turn slow and cache commands fail (two areas degraded)"
    table = _table(alerts, DEFAULT)
    degradation, slow = table[(fault, "ServiceDegradation")], table[(fault, "DatabaseSlowQueries")]
    assert degradation.expected > slow.expected - slow.group_wait
    longer = _table(_with_for(alerts, "DatabaseSlowQueries", "20m"), DEFAULT)[(fault, "ServiceDegradation")]
    assert longer.expected > degradation.expected + 500


def test_the_routings_group_wait_is_in_the_detection_time():
    """A cause pages at once; a symptom waits the page severity's group_wait, read from the config."""
    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT

    alerts = rules.all_alerts(DEFAULT)
    slow = DEFAULT.with_overrides({"routing.timers": "critical:50s:1m:1h,warning:30s:5m:10m,info:30s:5m:4h"})
    errors = ("the API answers 5xx to every request (a bad release)", "ApiCriticalErrorRate")
    pg = ("PostgreSQL goes down", "PostgreSQLDown")
    assert _table(alerts, DEFAULT)[pg].group_wait == 0
    assert _table(alerts, slow)[errors].expected == _table(alerts, DEFAULT)[errors].expected + 30
    assert _table(alerts, slow)[pg].expected == _table(alerts, DEFAULT)[pg].expected


def test_the_detection_model_matches_the_rules():
    """Every P0 is raised by a modelled fault; every modelled alert exists and still reads the
    window its model states; ALERTS readers name their inputs."""
    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT
    from mystocks_otel_mixin.docs import detection

    assert detection.problems(rules.all_alerts(DEFAULT)) == []


def test_the_detection_intervals_are_productions(pytestconfig):
    import yaml

    from mystocks_otel.config import Settings
    from mystocks_otel_mixin.docs import detection

    prom = yaml.safe_load((pytestconfig.rootpath / "prometheus" / "prometheus.yml").read_text())["global"]
    assert detection.seconds(prom["scrape_interval"]) == detection.PRODUCTION.scrape
    assert detection.seconds(prom["evaluation_interval"]) == detection.PRODUCTION.evaluation
    assert Settings().probe_interval_seconds == detection.PRODUCTION.probe


def test_the_live_run_is_checked_against_the_model(tmp_path):
    """A live value outside what the model allows under the overlay is marked in the table: too
    fast for the rule's `for`, slower than its worst case, or an ALERTS reader firing before the
    alerts it counts (which the live run of ServiceDegradation did, on leftovers)."""
    import json

    from mystocks_otel_mixin import rules
    from mystocks_otel_mixin.config import DEFAULT
    from mystocks_otel_mixin.docs import detection

    alerts = rules.all_alerts(DEFAULT)

    def row(alert, measured, window, for_):
        return {"category": "x", "alert": alert, "priority": "P0", "measured": measured, "window": window,
                "production_for": for_}

    path = tmp_path / "run.json"
    path.write_text(json.dumps([
        row("PostgreSQLDown", 5.6, 2, "1m"),        # probe 1 s + scrape 1 s + eval 1 s + for 2 s: fine
        row("RedisDown", 30.0, 2, "1m"),            # far past its worst case
        row("ApiCriticalErrorRate", 1.0, 3, "1m"),  # before its own for (2 s) could pass
        row("DatabaseSlowQueries", 24.4, 20, "10m"),
        row("RedisCommandErrors", 15.4, 3, "5m"),
        row("ServiceDegradation", 8.4, 25, "1m"),   # before its inputs fired
    ]))
    disagree = detection.live_disagreements(alerts, DEFAULT, path)
    assert set(disagree) == {"RedisDown", "ApiCriticalErrorRate", "ServiceDegradation"}, disagree
    assert "before the alerts it counts" in disagree["ServiceDegradation"]
    assert "(†)" in detection.section(alerts, DEFAULT, live=path)


def test_the_overlay_is_the_live_suites():
    from mystocks_otel_dev.stack import configs
    from mystocks_otel_mixin.docs import detection

    assert configs.TEST_FOR_DIVISOR == detection.OVERLAY_FOR_DIVISOR
    assert configs.seconds(configs.TEST_GROUP_WAIT) == detection.OVERLAY_GROUP_WAIT
