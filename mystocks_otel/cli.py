"""mystocks-otel: the demo, its traffic, generated monitoring files, the catalog and the settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _demo(args) -> int:
    from .demo.server import serve

    serve(host=args.host, port=args.port, reload=args.reload)
    return 0


def _traffic(args) -> int:
    from .demo.traffic import main

    return main(args.rest) or 0


def _mixin_config(args):
    """The render-time overrides as a MixinConfig; ValueError names the bad option."""
    from .mixin.config import MixinConfig

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


def _render(args) -> int:
    try:
        cfg = _mixin_config(args)
        from .mixin.render import stale_files, write_all
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


def _stack(args) -> int:
    from .stack import runner

    if args.action == "up":
        return runner.up(Path(args.dir), test_overlay=args.test_overlay)
    return {"down": runner.down, "status": runner.status}[args.action](Path(args.dir))


def _list(args) -> int:
    from .catalog import METRICS

    if args.json:
        print(json.dumps([spec.as_dict() for spec in METRICS], indent=2))
    else:
        for spec in METRICS:
            print(f"{spec.prometheus_name:52} {spec.kind.value:14} {spec.priority}  {spec.description}")
    return 0


def _check_config(args) -> int:
    from .config import ConfigError, describe

    try:
        rows = describe()
    except ConfigError as error:
        print(f"mystocks-otel: configuration error: {error}", file=sys.stderr)
        return 2
    print(table([("variable", "value", "source"), *rows]))
    print("configuration OK")
    return 0


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, the first row as the header, a rule under it."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mystocks-otel", description=__doc__.strip())
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the instrumented MyStocks demo API under uvicorn")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument("--reload", action="store_true",
                      help="restart when the demo's source changes (development)")
    demo.set_defaults(run=_demo)

    traffic = sub.add_parser("traffic", help="drive bounded traffic at a running demo "
                             "(`mystocks-otel traffic --help` for its options)",
                             add_help=False)  # its own options belong to demo.traffic
    traffic.set_defaults(run=_traffic)

    render = sub.add_parser("render", help="regenerate rules, dashboards and docs from the catalog",
                            description="Regenerate alerts/rules, dashboards and docs. The options "
                            "override mixin/config.py's MixinConfig defaults for one deployment.")
    render.add_argument("--root", default=".", help="where to write (default: the current directory)")
    render.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    render.add_argument("--grafana-url", help="Grafana base URL the alerts link to (default http://localhost:3000)")
    render.add_argument("--runbook-url", help="URL of docs/runbooks.md the alerts link to")
    render.add_argument("--app-job", help="Prometheus job of the API (default mystocks-api)")
    render.add_argument("--collector-job", help="Prometheus job of the OTel Collector (default otel-collector)")
    render.add_argument("--prometheus-job", help="Prometheus job scraping Prometheus itself (default prometheus)")
    render.add_argument("--alertmanager-job", help="Prometheus job of Alertmanager (default alertmanager)")
    render.add_argument("--loki-url", help="provision a Loki datasource in Grafana at this URL (default: none)")
    render.add_argument("--slo", action="append", default=[], metavar="NAME=OBJECTIVE",
                        help="an SLO objective, e.g. api-availability=0.995 (repeatable)")
    render.add_argument("--holiday", action="append", default=[], metavar="YYYY-MM-DD",
                        help="an exchange holiday: the trading session stays closed (repeatable)")
    render.set_defaults(run=_render)

    stack = sub.add_parser("stack", help="the whole monitoring stack on this machine: up, status, down")
    stack.add_argument("action", choices=("up", "status", "down"),
                       help="up starts every part on 127.0.0.1, status checks them, down stops them")
    stack.add_argument("--dir", default=".stack",
                       help="where the stack keeps its state, data and logs (default: .stack)")
    stack.add_argument("--test-overlay", action="store_true",
                       help="1 s scrape/evaluation, short `for` and routing waits, the trading session "
                            "always open: what the live tests run (thresholds and exprs unchanged)")
    stack.set_defaults(run=_stack)

    listing = sub.add_parser("list", help="print the metric catalog")
    listing.add_argument("--json", action="store_true",
                         help="every field of every metric as JSON (default: one line per metric)")
    listing.set_defaults(run=_list)

    check = sub.add_parser("check-config", help="validate the OTEL_*/MYSTOCKS_OTEL_* environment "
                           "and show each setting in force, and where it came from")
    check.set_defaults(run=_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "traffic":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
