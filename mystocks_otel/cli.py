"""mystocks-otel: the metric catalog and the settings in force.

Installed beside the library, mystocks-otel-mixin adds `render` and mystocks-otel-dev adds
`demo`, `traffic` and `stack`, through the `mystocks_otel.cli` entry-point group: each entry
point is a function that takes the subparsers object and adds its commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points

PLUGIN_GROUP = "mystocks_otel.cli"


def _list(args) -> int:
    from .catalog import METRICS

    if args.json:
        print(json.dumps([spec.as_dict() for spec in METRICS], indent=2))
    else:
        for spec in METRICS:
            print(f"{spec.prometheus_name:52} {spec.kind.value:14} {spec.priority}  {spec.description}")
    return 0


def _check_config(args) -> int:
    from .config import ConfigError, advisories, advisory_line, describe

    try:
        rows = describe()
    except ConfigError as error:
        print(f"mystocks-otel: configuration error: {error}", file=sys.stderr)
        return 2
    print(table([("variable", "value", "source"), *rows]))
    warnings = advisories()
    for variable, problem in warnings:  # read by the SDK, which drops or ignores them
        print("warning: " + advisory_line(variable, problem).removeprefix("mystocks-otel: "))
    print(f"configuration OK ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})"
          if warnings else "configuration OK")
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

    for entry_point in entry_points(group=PLUGIN_GROUP):
        # Other distributions add their commands here (mystocks-otel-mixin: render;
        # mystocks-otel-dev: demo, traffic, stack) without the library importing them.
        entry_point.load()(sub)
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
    if rest and not getattr(args, "pass_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
