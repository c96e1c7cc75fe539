"""Writes (or checks) every generated, committed artefact.

Each generator exposes ``generate(cfg) -> dict[str, str]``: repository-relative path -> file
text, rendered with the deployment's :class:`~mystocks_otel_mixin.config.MixinConfig`.
``mystocks-otel render`` writes them; ``--check`` (and the test suite) fails when a committed
file differs from what the generators produce with the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mystocks_otel_mixin import dashboards, routing, rules
from mystocks_otel_mixin.config import DEFAULT, MixinConfig
from mystocks_otel_mixin.docs import alerting, metrics

Generator = Callable[[MixinConfig], dict[str, str]]

GENERATORS: tuple[Generator, ...] = (
    metrics.generate,
    rules.generate,
    alerting.generate,
    dashboards.generate,
    routing.generate,
)


def generate_all(cfg: MixinConfig = DEFAULT) -> dict[str, str]:
    files: dict[str, str] = {}
    for generator in GENERATORS:
        files.update(generator(cfg))
    return files


def stale_files(root: Path, cfg: MixinConfig = DEFAULT) -> list[str]:
    """Generated paths whose committed text differs from the generators' output."""
    stale = []
    for rel, text in generate_all(cfg).items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            stale.append(rel)
    return sorted(stale)


def write_all(root: Path, cfg: MixinConfig = DEFAULT) -> list[str]:
    written = []
    for rel, text in generate_all(cfg).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(rel)
    return sorted(written)
