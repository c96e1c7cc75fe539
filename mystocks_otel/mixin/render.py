"""Writes (or checks) every generated, committed artefact.

Each generator module exposes ``generate() -> dict[str, str]``: repository-relative
path -> file text. ``mystocks-otel render`` writes them; ``--check`` (and the test
suite) fails when a committed file differs from what the generators produce.
"""

from __future__ import annotations

import importlib
from pathlib import Path

GENERATORS = (
    "mystocks_otel.mixin.docs",
    "mystocks_otel.mixin.rules",
    "mystocks_otel.mixin.dashboards",
)


def generate_all() -> dict[str, str]:
    files: dict[str, str] = {}
    for module_name in GENERATORS:
        files.update(importlib.import_module(module_name).generate())
    return files


def stale_files(root: Path) -> list[str]:
    """Generated paths whose committed text differs from the generators' output."""
    stale = []
    for rel, text in generate_all().items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            stale.append(rel)
    return sorted(stale)


def write_all(root: Path) -> list[str]:
    written = []
    for rel, text in generate_all().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(rel)
    return sorted(written)
