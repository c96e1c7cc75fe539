"""The metric count is the same everywhere a reader meets it (issue 14's papercut: the README
said 51 while docs/METRICS.md and /metrics/list said 56): the README's opening paragraph,
docs/METRICS.md (generated) and the catalog, which /metrics/list serves (test_setup.py)."""

from __future__ import annotations

import re
from pathlib import Path

from mystocks_otel import catalog

ROOT = Path(__file__).resolve().parents[3]


def test_readme_and_metrics_doc_say_the_catalogs_count():
    readme = re.search(r"adds (\d+) business and technical\s+metrics", (ROOT / "README.md").read_text())
    doc = re.search(r"^(\d+) metrics:", (ROOT / "docs" / "METRICS.md").read_text(), re.MULTILINE)
    assert readme and doc, "the count sentence moved: update this test with it"
    assert (int(readme.group(1)), int(doc.group(1))) == (len(catalog.METRICS),) * 2
