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
    """docs/ALERTING.md's measured table comes from package data (importlib.resources), so an
    installed mixin renders it as a checkout does; no file, no section."""
    from mystocks_otel_mixin.docs import detection

    assert detection.DATA.is_file(), "mystocks_otel_mixin/docs/detection-times.json is package data"
    text = detection.section()
    assert text.startswith("## Detection time, measured") and "P0 mean time to detect" in text
    assert detection.section(tmp_path / "missing.json") == ""
