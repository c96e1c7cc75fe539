"""Writes (or checks) every generated, committed artefact.

Each generator exposes ``generate(cfg) -> dict[str, str]``: repository-relative path -> file
text, rendered with the deployment's :class:`~mystocks_otel_mixin.config.MixinConfig`.
``mystocks-otel render`` writes them; ``--check`` (and the test suite) fails when a committed
file differs from what the generators produce with the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from mystocks_otel_mixin import dashboards, openslo, routing, rules
from mystocks_otel_mixin.config import DEFAULT, MixinConfig
from mystocks_otel_mixin.docs import alerting, metrics

Generator = Callable[[MixinConfig], dict[str, str]]

GENERATORS: tuple[Generator, ...] = (
    metrics.generate,
    rules.generate,
    alerting.generate,
    dashboards.generate,
    routing.generate,
    openslo.generate,
)


def latency_thresholds(cfg: MixinConfig) -> list[tuple[str, float]]:
    """(setting, seconds) of every threshold the rules read from the HTTP duration histogram
    through ``histogram_quantile`` (the p95 alerts) or a ``le`` bucket (the latency SLO)."""
    t = cfg.thresholds
    found = [("thresholds.api_latency_p95_warning_seconds", t.api_latency_p95_warning_seconds),
             ("thresholds.api_latency_p95_critical_seconds", t.api_latency_p95_critical_seconds)]
    found += [(f"slos.{s.name} threshold", s.threshold_seconds) for s in cfg.slos
              if s.name == "api-latency" and s.threshold_seconds is not None]
    return found


def check_http_buckets(cfg: MixinConfig) -> None:
    """A latency threshold between two bucket bounds cannot be read: ``le`` has no such bucket
    (the SLI counts nothing good) and histogram_quantile only interpolates inside a bucket, or
    tops out at the highest finite bound. ValueError, one line, names the threshold and buckets."""
    for name, seconds in latency_thresholds(cfg):
        if not any(math.isclose(seconds, bound, rel_tol=1e-9) for bound in cfg.http_buckets):
            raise ValueError(f"{name}={seconds:g} is not an HTTP duration bucket boundary: expected one of "
                             f"http_buckets={','.join(f'{b:g}' for b in cfg.http_buckets)} (add it to "
                             "MYSTOCKS_OTEL_HTTP_BUCKETS and http_buckets, or move the threshold)")


def generate_all(cfg: MixinConfig = DEFAULT) -> dict[str, str]:
    check_http_buckets(cfg)
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
