"""`mystocks-otel render`: regenerate the committed rules, dashboards and docs.

Registered in the library's CLI through the ``mystocks_otel.cli`` entry-point group.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import MixinConfig, flatten


def _config_file(path: str) -> dict:
    """A --config FILE.yaml: MixinConfig's keys, nested (``thresholds: {cache_hit_ratio_warning: 0.7}``)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"--config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"--config {path}: not YAML ({' '.join(str(error).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of MixinConfig keys, e.g. thresholds: {{api_error_ratio_warning: 0.02}}")
    return flatten(data)


def _sets(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. thresholds.api_error_ratio_warning=0.02")
        values[key.strip()] = value
    return values


def mixin_config(args) -> MixinConfig:
    """The render-time overrides as a MixinConfig; ValueError names the bad option.

    Precedence: the defaults, then ``--config FILE``, then ``--set``, then the named options."""
    cfg = MixinConfig()
    if getattr(args, "config", None):
        cfg = cfg.with_overrides(_config_file(args.config))
    cfg = cfg.with_overrides(_sets(getattr(args, "set", None) or []))
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
    if overrides:
        cfg = cfg.with_overrides(overrides)
    if args.holiday:
        cfg = cfg.with_holidays(tuple(args.holiday))
    return cfg.with_slo_objectives(objectives)


def render(args) -> int:
    try:
        cfg = mixin_config(args)
        from .render import stale_files, write_all
    except ValueError as error:
        print(f"mystocks-otel render: {error}", file=sys.stderr)
        return 2
    root = Path(args.root)
    if args.show_config:
        for key, value in cfg.items():
            print(f"{key}={_show(value)}")
        return 0
    try:
        # Everything is generated before anything is written: a config the rules refuse
        # (an alert's team outside labels.teams, say) writes nothing.
        if args.check:
            stale = stale_files(root, cfg)
            for rel in stale:
                print(f"stale: {rel} (run `mystocks-otel render`)", file=sys.stderr)
            return 1 if stale else 0
        written = write_all(root, cfg)
    except ValueError as error:
        print(f"mystocks-otel render: {error}", file=sys.stderr)
        return 2
    for rel in written:
        print(f"wrote {rel}")
    return 0


def _show(value) -> str:
    """A value in the form --set takes back: 0.8, a,b,c, 90-210,300-420, api=mystocks-api."""
    if isinstance(value, tuple):
        return ",".join(("=" if len(v) == 2 and isinstance(v[0], str) else "-" if len(v) == 2 else ":")
                        .join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)
    return "" if value is None else str(value)


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
    render_parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                               help="override any MixinConfig field, e.g. thresholds.cache_hit_ratio_warning=0.7 "
                               "or sessions.utc_minutes=90-210,300-420 (repeatable; --show-config lists the keys)")
    render_parser.add_argument("--config", metavar="FILE.yaml",
                               help="MixinConfig overrides from a YAML file, keys nested as in --show-config")
    render_parser.add_argument("--show-config", action="store_true",
                               help="print every key and value of the resulting config, and exit")
    render_parser.set_defaults(run=render)
