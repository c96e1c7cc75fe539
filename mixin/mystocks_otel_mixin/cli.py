"""`mystocks-otel render`: regenerate the committed rules, dashboards and docs.

Registered in the library's CLI through the ``mystocks_otel.cli`` entry-point group.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import MixinConfig


def mixin_config(args) -> MixinConfig:
    """The render-time overrides as a MixinConfig; ValueError names the bad option."""
    overrides = {name: value for name in ("grafana_url", "runbook_url", "app_job", "collector_job",
                                          "prometheus_job", "alertmanager_job", "loki_url")
                 if (value := getattr(args, name)) is not None}
    objectives = {}
    for item in args.slo:
        name, _, value = item.partition("=")
        try:
            objectives[name] = float(value)
        except ValueError:
            raise ValueError(f"--slo {item!r}: expected NAME=OBJECTIVE, e.g. api-availability=0.995") from None
    if args.holiday:
        overrides["holidays"] = tuple(args.holiday)
    return MixinConfig(**overrides).with_slo_objectives(objectives)


def render(args) -> int:
    try:
        cfg = mixin_config(args)
        from .render import stale_files, write_all
    except ValueError as error:
        print(f"mystocks-otel render: {error}", file=sys.stderr)
        return 2
    root = Path(args.root)
    if args.check:
        stale = stale_files(root, cfg)
        for rel in stale:
            print(f"stale: {rel} (run `mystocks-otel render`)", file=sys.stderr)
        return 1 if stale else 0
    for rel in write_all(root, cfg):
        print(f"wrote {rel}")
    return 0


def register(sub) -> None:
    render_parser = sub.add_parser(
        "render", help="regenerate rules, dashboards and docs from the catalog",
        description="Regenerate alerts/rules, dashboards and docs. The options override "
        "mystocks_otel_mixin.config.MixinConfig's defaults for one deployment.")
    render_parser.add_argument("--root", default=".", help="where to write (default: the current directory)")
    render_parser.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    render_parser.add_argument("--grafana-url", help="Grafana base URL the alerts link to (default http://localhost:3000)")
    render_parser.add_argument("--runbook-url", help="URL of docs/runbooks.md the alerts link to")
    render_parser.add_argument("--app-job", help="Prometheus job of the API (default mystocks-api)")
    render_parser.add_argument("--collector-job", help="Prometheus job of the OTel Collector (default otel-collector)")
    render_parser.add_argument("--prometheus-job", help="Prometheus job scraping Prometheus itself (default prometheus)")
    render_parser.add_argument("--alertmanager-job", help="Prometheus job of Alertmanager (default alertmanager)")
    render_parser.add_argument("--loki-url", help="provision a Loki datasource in Grafana at this URL (default: none)")
    render_parser.add_argument("--slo", action="append", default=[], metavar="NAME=OBJECTIVE",
                               help="an SLO objective, e.g. api-availability=0.995 (repeatable)")
    render_parser.add_argument("--holiday", action="append", default=[], metavar="YYYY-MM-DD",
                               help="an exchange holiday: the trading session stays closed (repeatable)")
    render_parser.set_defaults(run=render)
