"""The local stack's configs, rendered from the same files docker-compose mounts.

The stack runs every part on 127.0.0.1 with free ports, so it cannot use compose's host
names and ``/etc`` paths as they are. Each config here starts from the committed file and
changes only what :data:`LOCAL_DIFFERENCES` lists: that table is the one place where the
local stack and compose differ.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .sink import PAGERDUTY_KEYS

#: Every way the local stack's configs differ from compose's, and why.
LOCAL_DIFFERENCES: tuple[tuple[str, str, str], ...] = (
    ("Prometheus", "scrape targets, rule_files and Alertmanager addresses",
     "loopback ports and repository paths instead of compose host names and /etc/prometheus"),
    ("Prometheus", "two replicas with external label replica=a|b",
     "compose runs the same pair; each replica evaluates every rule and notifies both peers"),
    ("Prometheus", "remote_write URL", "the stack's VictoriaMetrics on a loopback port"),
    ("Prometheus", "built from its Go module (3.16.0, scripts/build-go-tool.sh), without the web UI; "
     "the UI is prometheus-ui, Debian's Prometheus 2.42 as a read-only console that reads replica a "
     "through remote_read",
     "the module does not carry the UI (an npm build of Prometheus' release process); compose's "
     "prom/prometheus image has it"),
    ("Alertmanager", "two peers gossiping on loopback", "compose runs the same pair"),
    ("Alertmanager", "built from its Go module (0.35.0); its web UI is a page pointing at the API "
     "and amtool",
     "the module's ui package embeds a UI its release process builds with Elm and npm; compose's "
     "prom/alertmanager image has it"),
    ("Alertmanager", "basic auth on its HTTP API (--web.config.file); Prometheus sends it",
     "on a shared machine another local user must not silence alerts: the stack's owner holds "
     "the password in a 0600 file (README, Security)"),
    ("Alertmanager", "every receiver's URL, the SMTP smarthost and the secrets",
     "the notification sink (one path per receiver) instead of Slack, PagerDuty and SMTP"),
    ("Collector", "every listen address and its exporters' endpoints",
     "127.0.0.1 and free ports instead of 0.0.0.0 defaults and compose host names"),
    ("Collector", "the build of collector/build.sh instead of the contrib image",
     "no Collector is packaged for Debian; the build has every component the base and the "
     "overlay use"),
    ("Jaeger", "built from its Go module (v1.75.0); at most 20000 traces in memory (compose: 100000); "
     "its web UI is Jaeger's placeholder page",
     "the module does not carry the UI (an npm build); the query API and Grafana's Jaeger "
     "datasource read the traces"),
    ("VictoriaLogs", "built from its Go module (v1.52.2); 7 days and at most 1 GiB on disk "
     "(compose: 30 days, 10 GiB)", "a dev machine's disk"),
)


def prometheus_config(base: dict, *, replica: str, targets: dict[str, list[str]],
                      rule_files: list[str], alertmanagers: list[str],
                      remote_write_url: str | None, alertmanager_auth: dict | None = None) -> dict:
    """compose's Prometheus config with the stack's targets, paths and replica label.

    ``alertmanager_auth`` (``{"username": ..., "password_file": ...}``) is the basic auth that
    Prometheus sends to Alertmanager, for its alerts and for scraping it."""
    config = copy.deepcopy(base)
    config.setdefault("global", {}).setdefault("external_labels", {})["replica"] = replica
    config["rule_files"] = rule_files
    alerting = config.setdefault("alerting", {})
    alerting["alertmanagers"] = [{"static_configs": [{"targets": alertmanagers}]}]
    if alertmanager_auth:
        alerting["alertmanagers"][0]["basic_auth"] = dict(alertmanager_auth)
    # Both replicas send the same alerts: without their replica label, Alertmanager sees one
    # alert and deduplicates (compose's file must say the same; tests/integration/stack checks it).
    relabel = {"action": "labeldrop", "regex": "replica"}
    if relabel not in alerting.setdefault("alert_relabel_configs", []):
        alerting["alert_relabel_configs"].append(relabel)
    for job in config.get("scrape_configs", []):
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    missing = set(targets) - {job["job_name"] for job in config.get("scrape_configs", [])}
    for name in sorted(missing):
        config.setdefault("scrape_configs", []).append(
            {"job_name": name, "static_configs": [{"targets": targets[name]}]})
    if alertmanager_auth:
        for job in config.get("scrape_configs", []):
            if job["job_name"] == "alertmanager":
                job["basic_auth"] = dict(alertmanager_auth)
    if remote_write_url is not None:
        writes = config.get("remote_write") or [{}]
        config["remote_write"] = [{**write, "url": remote_write_url} for write in writes]
    return config


def write_prometheus(path: Path, base_file: Path, **kwargs) -> Path:
    base = yaml.safe_load(base_file.read_text())
    path.write_text(yaml.safe_dump(prometheus_config(base, **kwargs), sort_keys=False))
    return path


def alertmanager_environment(*, sink_url: str, smtp_port: int, app_webhook_url: str,
                             templates_dir: Path, secrets_dir: Path, grafana_url: str) -> dict:
    """The render step's variables, every receiver pointed at the sink."""
    return {
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_REQUIRE_TLS": "false",
        "SMTP_USER": "alertmanager", "SMTP_FROM": "alertmanager@sink.invalid",
        "EMAIL_TEAM_PLATFORM": "platform@sink.invalid", "EMAIL_TEAM_DATA": "data@sink.invalid",
        "EMAIL_TEAM_PERFORMANCE": "performance@sink.invalid",
        "WEBHOOK_URL": f"{sink_url}/webhook", "APP_ALERT_WEBHOOK_URL": app_webhook_url,
        "HEARTBEAT_URL": f"{sink_url}/heartbeat", "PAGERDUTY_URL": f"{sink_url}/pagerduty",
        "GRAFANA_URL": grafana_url,
        "ALERTMANAGER_TEMPLATES_DIR": str(templates_dir),
        "ALERTMANAGER_SECRETS_DIR": str(secrets_dir),
    }


def alertmanager_secrets(*, sink_url: str, webhook_token: str) -> dict:
    return {
        "SLACK_WEBHOOK_URL_CRITICAL": f"{sink_url}/slack/slack-critical",
        "SLACK_WEBHOOK_URL_WARNINGS": f"{sink_url}/slack/slack-warnings",
        "SLACK_WEBHOOK_URL_PERFORMANCE": f"{sink_url}/slack/slack-performance",
        "SLACK_WEBHOOK_URL_DATA_ALERTS": f"{sink_url}/slack/slack-data-alerts",
        "MSTEAMS_WEBHOOK_URL_CRITICAL": f"{sink_url}/msteams/msteams-critical",
        "MSTEAMS_WEBHOOK_URL_WARNINGS": f"{sink_url}/msteams/msteams-warnings",
        "PAGERDUTY_ON_CALL_KEY": PAGERDUTY_KEYS["pagerduty-oncall"],
        "PAGERDUTY_SERVICE_KEY": PAGERDUTY_KEYS["pagerduty-service"],
        "SMTP_PASSWORD": "local-sink-has-no-auth",
        "ALERT_WEBHOOK_TOKEN": webhook_token,
    }


#: Layered over collector/otelcol.yaml and collector/overlay-contrib.yaml (lists are
#: replaced, maps merged): nothing to change, every address comes from the environment.
COLLECTOR_OVERLAY: dict = {}


def collector_environment(*, otlp_http: int, otlp_grpc: int, zpages: int, telemetry: int, exporter: int,
                          health: int, victoriametrics_url: str, prometheus_url: str, jaeger_otlp_http: str,
                          victorialogs_url: str) -> dict:
    return {
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp_http}",
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{otlp_grpc}",
        "OTELCOL_ZPAGES_ENDPOINT": f"127.0.0.1:{zpages}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(telemetry),
        "OTELCOL_PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{exporter}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "OTELCOL_PROMETHEUS_OTLP_ENDPOINT": f"{prometheus_url}/api/v1/otlp",
        "OTELCOL_VICTORIAMETRICS_OTLP_ENDPOINT": f"{victoriametrics_url}/opentelemetry",
        "OTELCOL_JAEGER_OTLP_ENDPOINT": jaeger_otlp_http,
        "OTELCOL_VICTORIALOGS_OTLP_ENDPOINT": f"{victorialogs_url}/insert/opentelemetry",
        "DEPLOYMENT_ENVIRONMENT": "local-stack",
        "OTELCOL_BATCH_TIMEOUT": "1s",
    }


def prometheus_console(source_url: str) -> dict:
    """The read-only console's config: no scrapes, no rules, every query read from the
    replica at ``source_url`` (``read_recent``: its newest samples too)."""
    return {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "remote_read": [{"url": f"{source_url}/api/v1/read", "read_recent": True,
                             "name": "prometheus-a"}]}


def write_prometheus_console(path: Path, source_url: str) -> Path:
    path.write_text(yaml.safe_dump(prometheus_console(source_url), sort_keys=False))
    return path


# -- the test overlay --------------------------------------------------------------------------
# The live suite runs the real rules and routing, faster. It may shorten only the scrape and
# evaluation intervals, every rule's `for` and Alertmanager's waits, and replace the trading-
# session rule with an always-open series so that market-data scenarios run at any hour. It
# changes no other expr and no threshold: tests/live/test_overlay.py checks exactly that.

TEST_INTERVAL = "1s"
#: Every `for` is divided by this: shorter, and still in the production order, so an alert
#: whose `for` is shorter still fires first and inhibits its slower twin, as in production.
TEST_FOR_DIVISOR = 30
TEST_GROUP_WAIT = "1s"
TEST_GROUP_INTERVAL = "2s"
TRADING_SESSION_MARK = "trading_session"

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``, ``90s``, ``0s``) in seconds."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(duration))
    if not parts or "".join(n + u for n, u in parts) != str(duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def test_overlay_rules(groups: dict) -> dict:
    """One rule file with every `for` divided by TEST_FOR_DIVISOR and the trading session open."""
    out = copy.deepcopy(groups)
    for group in out.get("groups", []):
        group["interval"] = TEST_INTERVAL
        for rule in group.get("rules", []):
            if "for" in rule:
                rule["for"] = f"{round(seconds(rule['for']) * 1000 / TEST_FOR_DIVISOR)}ms"
            if TRADING_SESSION_MARK in rule.get("record", ""):
                rule["expr"] = "vector(1)"
    return out


def test_overlay_prometheus(config: dict) -> dict:
    out = copy.deepcopy(config)
    out.setdefault("global", {}).update(
        scrape_interval=TEST_INTERVAL, evaluation_interval=TEST_INTERVAL, scrape_timeout=TEST_INTERVAL)
    for job in out.get("scrape_configs", []):
        for key in ("scrape_interval", "scrape_timeout"):
            job.pop(key, None)
    return out


def test_overlay_alertmanager(config: dict) -> dict:
    """Every route's non-zero group_wait and group_interval shortened; nothing else."""
    out = copy.deepcopy(config)

    def walk(route: dict) -> None:
        if "group_wait" in route and seconds(route["group_wait"]) > 0:
            route["group_wait"] = TEST_GROUP_WAIT
        if "group_interval" in route:
            route["group_interval"] = TEST_GROUP_INTERVAL
        for child in route.get("routes", []):
            walk(child)

    walk(out["route"])
    return out
