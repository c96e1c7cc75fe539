"""Alertmanager config: render step, routing table (amtool), inhibition, and a live run.

The routing cases are the spec's channel table, one row each, checked by the real
`amtool config routes test --verify.receivers`. The live test starts the real Alertmanager
0.35 with every receiver (Slack, Microsoft Teams, PagerDuty, SMTP, webhooks) pointed at the
notification sink (devtools' stack/sink.py, which stands in for each service's endpoint), so
the notification templates are executed, not just parsed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import holds_for, wait_stable, wait_until
import yaml

from mystocks_otel_dev.stack import processes
from mystocks_otel_dev.stack.processes import Processes

from mystocks_otel_mixin.alertmanager import (
    SECRETS,
    AlertmanagerConfigError,
    render_alertmanager_config,
    render_text,
    write_secret_files,
)

ROOT = Path(__file__).resolve().parents[3]
AM_DIR = ROOT / "alerts" / "alertmanager"
TEMPLATE = AM_DIR / "alertmanager.yml.tmpl"

SAMPLE_ENV = {
    "SMTP_HOST": "smtp.example.com",
    "SMTP_PORT": "587",
    "SMTP_USER": "alerts@example.com",
    "SMTP_FROM": "alertmanager@example.com",
    "EMAIL_TEAM_PLATFORM": "platform-lead@example.com",
    "EMAIL_TEAM_DATA": "data-lead@example.com",
    "EMAIL_TEAM_PERFORMANCE": "performance-lead@example.com",
    "WEBHOOK_URL": "https://hooks.example.com/mystocks",
    "APP_ALERT_WEBHOOK_URL": "http://api:8000/alerts/webhook",
    "HEARTBEAT_URL": "https://heartbeat.example.com/ping/mystocks",
    "GRAFANA_URL": "https://grafana.example.com",
    "ALERTMANAGER_TEMPLATES_DIR": str(AM_DIR / "templates"),
}
SAMPLE_SECRETS = {
    "SLACK_WEBHOOK_URL_CRITICAL": "https://hooks.slack.com/services/T000/B001/critical0secret",
    "SLACK_WEBHOOK_URL_WARNINGS": "https://hooks.slack.com/services/T000/B002/warnings0secret",
    "SLACK_WEBHOOK_URL_PERFORMANCE": "https://hooks.slack.com/services/T000/B003/perf0secret",
    "SLACK_WEBHOOK_URL_DATA_ALERTS": "https://hooks.slack.com/services/T000/B004/data0secret",
    # A Teams Workflows URL: its sig= parameter is the credential.
    "MSTEAMS_WEBHOOK_URL_CRITICAL": "https://prod-01.westeurope.logic.azure.com:443/workflows/0a1b/triggers/manual"
                                    "/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0"
                                    "&sig=critical0teams0secret",
    "MSTEAMS_WEBHOOK_URL_WARNINGS": "https://prod-01.westeurope.logic.azure.com:443/workflows/2c3d/triggers/manual"
                                    "/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0"
                                    "&sig=warnings0teams0secret",
    "PAGERDUTY_ON_CALL_KEY": "0123456789abcdef0123456789abcdef",
    "PAGERDUTY_SERVICE_KEY": "fedcba9876543210fedcba9876543210",
    "SMTP_PASSWORD": "s3cret-smtp-pass",
    "ALERT_WEBHOOK_TOKEN": "token-0123456789abcdef",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("am") / "alertmanager.yml"
    render_alertmanager_config(TEMPLATE, out, {**SAMPLE_ENV, **SAMPLE_SECRETS})
    return out


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


# -- the render step ---------------------------------------------------------------------

def test_rendered_config_passes_amtool_check_config(rendered, amtool):
    result = run(amtool, "check-config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout  # our templates dir was found and parsed


def test_rendered_config_contains_no_secret_values_only_file_paths(rendered):
    text = rendered.read_text()
    for name, value in SAMPLE_SECRETS.items():
        assert value not in text, f"{name}'s value leaked into the rendered config"
    config = yaml.safe_load(text)
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack and slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
        for teams in receiver.get("msteamsv2_configs", []):
            assert "webhook_url" not in teams and teams["webhook_url_file"].startswith("/etc/alertmanager/secrets/")
        for pd in receiver.get("pagerduty_configs", []):
            assert "routing_key" not in pd and "service_key" not in pd
            assert pd["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    assert "smtp_auth_password" not in config["global"]
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp-password"
    assert config["global"]["smtp_smarthost"] == "smtp.example.com:587"
    assert config["global"]["smtp_auth_username"] == "alerts@example.com"
    assert "${" not in text


def test_every_slack_channel_has_its_own_secret_file(rendered):
    receivers = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}
    files = {name: receivers[name]["slack_configs"][0]["api_url_file"]
             for name in ("slack-critical", "slack-warnings", "slack-performance", "slack-data-alerts")}
    assert len(set(files.values())) == 4
    teams = {name: receivers[name]["msteamsv2_configs"][0]["webhook_url_file"]
             for name in ("msteams-critical", "msteams-warnings")}
    assert sorted(teams.values()) == ["/etc/alertmanager/secrets/msteams-critical.url",
                                      "/etc/alertmanager/secrets/msteams-warnings.url"]
    assert receivers["slack-critical"]["slack_configs"][0]["channel"] == "#mystocks-critical"
    # The critical message links the dashboard, falling back to the configured Grafana.
    assert "https://grafana.example.com/d/mystocks-main" in receivers["slack-critical"]["slack_configs"][0]["title_link"]
    for email in ("email-platform", "email-data", "email-performance"):
        assert "html" in receivers[email]["email_configs"][0]


@pytest.mark.parametrize("name, value, expected", [
    ("SMTP_PORT", "abc", "SMTP_PORT='abc' is invalid: expected an integer port 1-65535"),
    ("SMTP_PORT", "70000", "SMTP_PORT='70000' is invalid: expected an integer port 1-65535"),
    ("SMTP_HOST", "", "SMTP_HOST is not set: expected the SMTP server's host name"),
    ("SMTP_HOST", "smtp example.com", "SMTP_HOST='smtp example.com' is invalid"),
    ("EMAIL_TEAM_DATA", "data-lead", "EMAIL_TEAM_DATA='data-lead' is invalid: expected one e-mail address"),
    ("WEBHOOK_URL", "ftp://x", "WEBHOOK_URL='ftp://x' is invalid: expected an http(s) URL"),
    # A quote would end the YAML scalar; braces would open a Go template action.
    ("HEARTBEAT_URL", "https://x/'{{ .Status }}", "HEARTBEAT_URL="),
    ("SMTP_REQUIRE_TLS", "yes", "SMTP_REQUIRE_TLS='yes' is invalid: expected true or false"),
])
def test_missing_or_invalid_variable_fails_with_one_clear_line(tmp_path, name, value, expected):
    env = {**SAMPLE_ENV, name: value}
    with pytest.raises(AlertmanagerConfigError) as err:
        render_alertmanager_config(TEMPLATE, tmp_path / "out.yml", env)
    message = str(err.value)
    assert "\n" not in message and message.startswith(expected), message
    assert not (tmp_path / "out.yml").exists()


def test_cli_runs_stdlib_only_and_reports_one_line(tmp_path):
    """As scripts/render-alertmanager.sh runs it: the file itself, no site-packages (-S)."""
    cli = [sys.executable, "-S", str(ROOT / "mixin" / "mystocks_otel_mixin" / "alertmanager.py")]
    env = {**os.environ, **SAMPLE_ENV}
    out = tmp_path / "out.yml"
    ok = subprocess.run([*cli, "render", "--template", str(TEMPLATE), "--output", str(out)],
                        capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0 and out.exists(), ok.stderr
    bad = subprocess.run([*cli, "render", "--template", str(TEMPLATE), "--output", str(out)],
                         capture_output=True, text=True, timeout=30, env={**env, "SMTP_PORT": "abc"})
    assert bad.returncode == 2
    assert bad.stderr == "error: SMTP_PORT='abc' is invalid: expected an integer port 1-65535\n"


def test_unknown_placeholder_and_secret_in_a_rendered_variable_are_refused():
    with pytest.raises(AlertmanagerConfigError, match="unknown placeholder.*SLACK_TYPO"):
        render_text("url: '${SLACK_TYPO}'", SAMPLE_ENV)
    # Someone pastes the Slack URL into WEBHOOK_URL: it would end up in the file. Refuse.
    leaked = {**SAMPLE_ENV, **SAMPLE_SECRETS, "WEBHOOK_URL": SAMPLE_SECRETS["SLACK_WEBHOOK_URL_CRITICAL"]}
    with pytest.raises(AlertmanagerConfigError, match="SLACK_WEBHOOK_URL_CRITICAL"):
        render_text(TEMPLATE.read_text(), leaked)
    # Go template variables ($x) are not placeholders.
    assert render_text("t: '{{ range $i, $p := .X }}{{ end }}'", SAMPLE_ENV) == "t: '{{ range $i, $p := .X }}{{ end }}'"


def test_secret_files_are_written_0600_and_never_echoed(tmp_path):
    warnings = write_secret_files(tmp_path / "secrets", SAMPLE_SECRETS)
    assert warnings == []
    for secret in SECRETS:
        path = tmp_path / "secrets" / secret.filename
        assert path.read_text() == SAMPLE_SECRETS[secret.env]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700

    with pytest.raises(AlertmanagerConfigError) as err:
        write_secret_files(tmp_path / "s2", {**SAMPLE_SECRETS, "PAGERDUTY_ON_CALL_KEY": "short key!"})
    assert "PAGERDUTY_ON_CALL_KEY is invalid (value not shown)" in str(err.value)
    assert "short key!" not in str(err.value)

    missing = {k: v for k, v in SAMPLE_SECRETS.items() if k != "SMTP_PASSWORD"}
    with pytest.raises(AlertmanagerConfigError, match="^SMTP_PASSWORD is not set"):
        write_secret_files(tmp_path / "s3", missing)
    assert write_secret_files(tmp_path / "s4", missing, allow_missing=True) == [
        "SMTP_PASSWORD is not set: e-mail to team leads will fail to deliver"]
    assert not (tmp_path / "s4" / "smtp-password").exists()

    # Without the token file Alertmanager cannot call the app at all: a dev setup gets a
    # random one (accepted by an app that runs without a token), kept across runs.
    no_token = {k: v for k, v in SAMPLE_SECRETS.items() if k != "ALERT_WEBHOOK_TOKEN"}
    assert "ALERT_WEBHOOK_TOKEN is not set: wrote a random token" in write_secret_files(
        tmp_path / "s5", no_token, allow_missing=True)[0]
    token = (tmp_path / "s5" / "alert-webhook.token").read_text()
    assert len(token) >= 32
    write_secret_files(tmp_path / "s5", no_token, allow_missing=True)
    assert (tmp_path / "s5" / "alert-webhook.token").read_text() == token


def test_single_slack_webhook_url_is_a_fallback_with_a_warning(tmp_path):
    env = {k: v for k, v in SAMPLE_SECRETS.items() if not k.startswith("SLACK_")}
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.com/services/T000/B009/shared"
    warnings = write_secret_files(tmp_path, env)
    assert len(warnings) == 4 and all("SLACK_WEBHOOK_URL" in w for w in warnings)
    assert (tmp_path / "slack-warnings.url").read_text() == env["SLACK_WEBHOOK_URL"]


def test_teams_webhook_urls_are_secrets_with_one_fallback(tmp_path):
    """Each Teams channel's Workflows URL goes to its own 0600 file; MSTEAMS_WEBHOOK_URL stands in
    for unset ones (with a warning); an unset one is an error naming it; a URL that could end
    the YAML scalar is refused without echoing it."""
    env = {k: v for k, v in SAMPLE_SECRETS.items() if not k.startswith("MSTEAMS_")}
    with pytest.raises(AlertmanagerConfigError, match="^MSTEAMS_WEBHOOK_URL_CRITICAL is not set: expected a "
                                                      "Microsoft Teams Workflows webhook URL"):
        write_secret_files(tmp_path / "a", env)
    shared = SAMPLE_SECRETS["MSTEAMS_WEBHOOK_URL_CRITICAL"]
    warnings = write_secret_files(tmp_path / "b", {**env, "MSTEAMS_WEBHOOK_URL": shared})
    assert len(warnings) == 2 and all("MSTEAMS_WEBHOOK_URL" in w for w in warnings)
    assert (tmp_path / "b" / "msteams-warnings.url").read_text() == shared
    assert stat.S_IMODE((tmp_path / "b" / "msteams-warnings.url").stat().st_mode) == 0o600
    with pytest.raises(AlertmanagerConfigError) as err:
        write_secret_files(tmp_path / "c", {**SAMPLE_SECRETS, "MSTEAMS_WEBHOOK_URL_WARNINGS": "https://x/'sig=1"})
    assert "MSTEAMS_WEBHOOK_URL_WARNINGS is invalid (value not shown)" in str(err.value)
    assert "sig=1" not in str(err.value)


# -- the routing table -------------------------------------------------------------------
# (labels, receivers in routing-tree order). One row per row of the spec's channel table,
# plus the severities' edge cases.
API = "category=api team=platform service=mystocks-api"
ROUTES = [
    pytest.param(f"alertname=ApiCriticalErrorRate severity=critical {API}",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform", id="critical-api"),
    pytest.param(f"alertname=ApiHighErrorRate severity=warning {API}",
                 "webhook,slack-warnings,msteams-warnings,email-platform", id="warning-api"),
    pytest.param("alertname=HighCpuUsage severity=warning category=system team=performance service=mystocks-api",
                 "webhook,slack-warnings,msteams-warnings,slack-performance,email-performance", id="team-performance"),
    pytest.param("alertname=SlowQueries severity=critical category=database team=performance",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,slack-performance,email-performance",
                 id="critical-performance"),
    pytest.param("alertname=StaleMarketData severity=warning category=market_data team=data",
                 "webhook,slack-warnings,msteams-warnings,slack-data-alerts,email-data", id="team-data"),
    pytest.param("alertname=MarketDataProcessingBlocked severity=critical category=market_data team=data",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,slack-data-alerts,email-data",
                 id="critical-data"),
    pytest.param("alertname=DependencyUnavailable severity=warning category=health team=platform",
                 "webhook,slack-warnings,msteams-warnings,pagerduty-service,email-platform", id="health-warning-pages"),
    pytest.param("alertname=ComponentUnhealthy severity=critical category=health team=platform",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform",
                 id="health-critical-pages-once"),
    pytest.param("alertname=NoActiveUsers severity=info category=business team=data",
                 "webhook", id="info-webhook-only"),
    pytest.param("alertname=DependencyDegraded severity=info category=health team=platform",
                 "webhook", id="info-health-no-page"),
    pytest.param("alertname=Watchdog severity=info category=meta priority=P3 team=platform heartbeat=true",
                 "heartbeat", id="watchdog-heartbeat-only"),
    # A cause reaches the same receivers as any critical (it only pages sooner: test_severity_timers).
    pytest.param("alertname=MarketDataNotUpdated severity=critical category=market_data team=data "
                 "service=market-data",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,slack-data-alerts,email-data",
                 id="cause-critical-data"),
    pytest.param("alertname=PostgreSQLDown severity=critical category=health team=platform service=postgresql",
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform", id="cause-critical-health"),
    pytest.param("alertname=RuleWithoutSeverity category=api team=platform",
                 "webhook,slack-warnings", id="missing-severity-is-visible"),
]


@pytest.mark.parametrize("labels, receivers", ROUTES)
def test_route(rendered, amtool, labels, receivers):
    result = run(amtool, "config", "routes", "test", f"--config.file={rendered}",
                 f"--verify.receivers={receivers}", *labels.split())
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()} (expected {receivers})"


def test_severity_timers(rendered):
    routes = {tuple(r.get("matchers", [])): r for r in yaml.safe_load(rendered.read_text())["route"]["routes"]}
    critical, warning = routes[('severity="critical"',)], routes[('severity="warning"',)]
    watchdog = routes[('alertname="Watchdog"',)]
    causes = next(r for m, r in routes.items() if m[:1] == ('severity="critical"',) and len(m) == 2)
    # Issue 15 row 12: a cause pages at once; a symptom waits one evaluation interval (15 s in
    # production) plus delivery, long enough for its cause to arrive and inhibit it.
    assert causes["group_wait"] == "0s" and critical["group_wait"] == "20s"
    assert set(causes["matchers"][1].split('"')[1].split("|")) == {
        "PostgreSQLDown", "RedisDown", "ApiJobDown", "ApiTargetDown", "ApiTargetFlapping", "ApiTargetAbsent",
        "MarketDataNotUpdated", "MarketDataUpdatesAbsent"}
    assert causes["routes"] == critical["routes"]  # the same receivers, only sooner
    assert (warning["group_wait"], warning["repeat_interval"]) == ("30s", "10m")
    assert (watchdog["receiver"], watchdog["repeat_interval"]) == ("heartbeat", "1m")
    assert not watchdog.get("continue", False)  # the Watchdog stops at the heartbeat
    assert yaml.safe_load(rendered.read_text())["route"]["group_by"] == ["alertname", "service", "category"]


def test_inhibition_rules_are_as_specified(rendered):
    rules = yaml.safe_load(rendered.read_text())["inhibit_rules"]
    as_tuples = {(tuple(r["source_matchers"]), tuple(r["target_matchers"]), tuple(r.get("equal", []))) for r in rules}
    assert (('severity="critical"',), ('severity=~"warning|info"',), ("alertname", "service")) in as_tuples
    sources = " ".join(m for r in rules for m in r["source_matchers"])
    for component in ("ApiTargetDown", "PostgreSQLDown", "RedisDown"):
        assert component in sources
    # Every inhibition narrows by labels or names: none silences everything everywhere.
    assert all(r.get("equal") for r in rules)


def rule_alerts() -> list[dict]:
    """Every alerting rule in alerts/rules/*.yml (written by the rules generator)."""
    files = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
    return [rule for f in files for group in yaml.safe_load(f.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_every_alertname_in_the_inhibition_rules_exists(rendered):
    alerts = rule_alerts()
    if not alerts:
        pytest.skip("alerts/rules/*.yml not generated yet")
    names = {rule["alert"] for rule in alerts}
    rules = yaml.safe_load(rendered.read_text())["inhibit_rules"]
    for rule in rules:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname"):
                pattern = matcher.split('"')[1]
                referenced = set(pattern.split("|"))
                assert referenced <= names, f"{matcher}: no such alert rule {sorted(referenced - names)}"


def expected_receivers(labels: dict) -> set[str]:
    """The spec's channel table, stated independently of the route tree."""
    if labels["alertname"] == "Watchdog":
        return {"heartbeat"}
    severity, team = labels.get("severity"), labels.get("team")
    if severity == "info":
        return {"webhook"}
    receivers = {"webhook", f"email-{team}"}
    if severity == "critical":
        receivers |= {"slack-critical", "msteams-critical", "pagerduty-oncall"}
    else:
        receivers |= {"slack-warnings", "msteams-warnings"}
        if labels.get("category") == "health":
            receivers.add("pagerduty-service")
    receivers |= {"performance": {"slack-performance"}, "data": {"slack-data-alerts"}}.get(team, set())
    return receivers


def test_every_alert_rule_routes_per_the_channel_table(rendered, amtool):
    alerts = rule_alerts()
    if not alerts:
        pytest.skip("alerts/rules/*.yml not generated yet")
    wrong = []
    for rule in alerts:
        # A templated label (service of a dependency) routes like any value: use a sample.
        labels = {"alertname": rule["alert"],
                  **{k: ("sample" if "{{" in v else v) for k, v in rule["labels"].items()}}
        result = run(amtool, "config", "routes", "test", f"--config.file={rendered}",
                     *(f"{k}={v}" for k, v in labels.items()))
        got = set(result.stdout.strip().split(","))
        if result.returncode != 0 or got != expected_receivers(labels):
            wrong.append(f"{labels}: got {sorted(got)}, expected {sorted(expected_receivers(labels))}")
    assert not wrong, "\n".join(wrong)


# -- live: the real Alertmanager, every receiver pointed at this test ---------------------

class Recorder:
    """What the notification sink (devtools' stack/sink.py) received, read back over its API:
    ``http`` as (path, headers, JSON body), ``mail`` as ([recipient], raw message)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.lock = threading.Lock()  # kept for callers that read under it; the sink serialises

    def _items(self) -> list[dict]:
        return http_json(f"{self.url}/api/notifications")

    @property
    def http(self) -> list[tuple[str, dict, object]]:
        return [(i["channel"].split(" ", 1)[1], i.get("headers", {}), i["body"])
                for i in self._items() if i["channel"].startswith("http ")]

    @property
    def mail(self) -> list[tuple[list[str], str]]:
        return [([i["channel"].split(" ", 1)[1]], i["body"])
                for i in self._items() if i["channel"].startswith("smtp ")]

    def wait_for(self, predicate, timeout: float, what: str):
        try:
            return wait_until(lambda: predicate(self), timeout, what, interval=0.05)
        except AssertionError as error:
            seen = [p for p, _, _ in self.http], [r for r, _ in self.mail]
            raise AssertionError(f"{error}; seen {seen}") from None

    def paths(self, path: str) -> list[dict]:
        return [body for p, _, body in self.http if p == path]


def http_json(url: str, data=None, timeout: float = 5.0):
    request = urllib.request.Request(url, method="POST" if data is not None else "GET",
                                     data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        return json.loads(body) if body else None


@pytest.fixture
def live(tmp_path, alertmanager_binary):
    """The real Alertmanager, every receiver pointed at the notification sink; both started,
    waited for and stopped by the process harness."""
    with Processes(tmp_path / "procs") as procs:
        sink = procs.start(processes.sink(tmp_path / "notifications.jsonl"))
        base = sink.url.rstrip("/")
        env = {**SAMPLE_ENV, "WEBHOOK_URL": f"{base}/custom", "APP_ALERT_WEBHOOK_URL": f"{base}/alerts/webhook",
               "HEARTBEAT_URL": f"{base}/heartbeat", "PAGERDUTY_URL": f"{base}/pagerduty",
               "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.ports[0]),
               "SMTP_REQUIRE_TLS": "false", "ALERTMANAGER_SECRETS_DIR": str(tmp_path / "secrets")}
        # The sink stands in for Slack's and the Teams workflows' endpoints, one path per channel.
        secrets = {**SAMPLE_SECRETS, **{s.env: f"{base}/{s.filename.split('-')[0]}/{s.filename[:-4]}" for s in SECRETS
                                        if s.env.startswith(("SLACK_", "MSTEAMS_"))}}
        write_secret_files(tmp_path / "secrets", secrets)
        render_alertmanager_config(TEMPLATE, tmp_path / "alertmanager.yml", env)
        am = procs.start(processes.alertmanager(tmp_path / "alertmanager.yml", tmp_path / "data", None,
                                                "--log.level=debug", binary=alertmanager_binary))
        yield {"url": am.url, "recorder": Recorder(base), "secrets": secrets, "log": Path(am.log)}


def alert(name: str, severity: str, **labels: str) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": name, "severity": severity, "priority": "P0", "service": "mystocks-api",
                   "job": "mystocks-api", **labels},
        "annotations": {"summary": f"{name} summary", "description": f"{name} <description> & details",
                        "runbook_url": f"https://runbooks.example.com/{name}",
                        "dashboard_url": f"https://grafana.example.com/d/mystocks-main?alert={name}"},
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


@pytest.mark.live
def test_live_critical_alert_reaches_every_channel_at_once(live):
    """A critical alert that names a cause (PostgreSQLDown, MarketDataNotUpdated) reaches every
    channel within seconds: its group_wait is 0s. Its symptoms wait 20 s
    (tests/integration/mixin/test_one_page_per_cause.py)."""
    recorder, secrets = live["recorder"], live["secrets"]
    sent = time.monotonic()
    http_json(f"{live['url']}/api/v2/alerts", [
        alert("PostgreSQLDown", "critical", category="health", team="platform", service="postgresql"),
        alert("MarketDataNotUpdated", "critical", category="market_data", team="data", service="market-data",
              source="akshare"),
    ])
    recorder.wait_for(lambda r: len(r.paths("/slack/slack-critical")) >= 2, timeout=3, what="#mystocks-critical")
    recorder.wait_for(lambda r: len(r.paths("/slack/slack-data-alerts")) and len(r.mail) >= 2
                      and len(r.paths("/pagerduty")) >= 2 and len(r.paths("/alerts/webhook")) >= 2
                      and len(r.paths("/msteams/msteams-critical")) >= 2,
                      timeout=5, what="every critical notification")
    assert time.monotonic() - sent < 5

    slack = recorder.paths("/slack/slack-critical")
    attachment = next(a for body in slack for a in body["attachments"] if "PostgreSQLDown" in a["title"])
    assert attachment["title_link"] == "https://grafana.example.com/d/mystocks-main?alert=PostgreSQLDown"
    assert "PostgreSQLDown summary" in attachment["text"] and attachment["color"] == "danger"
    assert "&lt;description&gt; &amp; details" in attachment["text"]  # escaped for Slack mrkdwn
    assert attachment["actions"][0] == {"type": "button", "text": "Dashboard", "url": attachment["title_link"]}
    assert body_channels(slack) == {"#mystocks-critical"}
    assert recorder.paths("/slack/slack-warnings") == [] and recorder.paths("/slack/slack-performance") == []

    keys = {body["routing_key"] for body in recorder.paths("/pagerduty")}
    assert keys == {secrets["PAGERDUTY_ON_CALL_KEY"]}
    assert {body["payload"]["severity"] for body in recorder.paths("/pagerduty")} == {"critical"}

    # Microsoft Teams: the Workflows webhook gets an Adaptive Card (title block, then the text).
    teams = recorder.paths("/msteams/msteams-critical")
    assert recorder.paths("/msteams/msteams-warnings") == []
    cards = [a for body in teams for a in body["attachments"] if body["type"] == "message"]
    assert {a["contentType"] for a in cards} == {"application/vnd.microsoft.card.adaptive"}
    card = next(a["content"] for a in cards if "PostgreSQLDown" in a["content"]["body"][0]["text"])
    assert card["type"] == "AdaptiveCard"
    title, text = card["body"][0]["text"], card["body"][1]["text"]
    assert title == "[FIRING:1] CRITICAL PostgreSQLDown (postgresql)"
    assert text.startswith("FIRING: **PostgreSQLDown summary**")
    assert "PostgreSQLDown <description> & details" in text
    assert "[Dashboard](https://grafana.example.com/d/mystocks-main?alert=PostgreSQLDown)" in text
    assert "[Runbook](https://runbooks.example.com/PostgreSQLDown)" in text and "[Silence this group](" in text
    # The sink (the local stack's too) names the Teams channel and the alert it was told of.
    teams_items = [i for i in recorder._items() if i["channel"] == "http /msteams/msteams-critical"]
    assert {i["receiver"] for i in teams_items} == {"msteams-critical"}
    assert any("PostgreSQLDown" in name for i in teams_items for name in i["alertnames"])

    webhook = recorder.paths("/alerts/webhook")
    assert {a["labels"]["alertname"] for body in webhook for a in body["alerts"]} == {
        "PostgreSQLDown", "MarketDataNotUpdated"}
    assert all(body["version"] == "4" for body in webhook)
    auth = {h.get("Authorization") for p, h, _ in recorder.http if p == "/alerts/webhook"}
    assert auth == {f"Bearer {secrets['ALERT_WEBHOOK_TOKEN']}"}
    assert len(recorder.paths("/custom")) >= 2

    mail = {rcpt[0]: raw for rcpt, raw in recorder.mail}
    assert set(mail) == {"platform-lead@example.com", "data-lead@example.com"}
    assert "text/html" in mail["platform-lead@example.com"]
    assert "PostgreSQLDown" in mail["platform-lead@example.com"]
    assert "[MyStocks] [FIRING:1] CRITICAL PostgreSQLDown (postgresql)" in mail["platform-lead@example.com"]
    # A template error only shows at send time, as a failed notification in the log.
    log = live["log"].read_text()
    assert "level=error" not in log, log[-3000:]


def body_channels(bodies: list[dict]) -> set[str]:
    return {body.get("channel") for body in bodies}


@pytest.mark.live
def test_live_watchdog_only_reaches_the_heartbeat(live):
    recorder = live["recorder"]
    http_json(f"{live['url']}/api/v2/alerts", [
        alert("Watchdog", "info", category="meta", team="platform", heartbeat="true", priority="P3")])
    recorder.wait_for(lambda r: r.paths("/heartbeat"), timeout=5, what="the heartbeat")
    # A quiet second: anything wrongly routed with group_wait 0s would arrive in it.
    holds_for(lambda: {p for p, _, _ in recorder.http} == {"/heartbeat"} and recorder.mail == [], 1,
              "only the heartbeat notified")


@pytest.mark.live
def test_live_inhibition(live):
    """Inhibition is evaluated on the alerts API at once: no notification wait needed."""
    api = f"{live['url']}/api/v2/alerts"
    http_json(api, [
        # The warning/critical pair of one problem on one instance: the critical one speaks.
        alert("CriticalMemoryUsage", "critical", category="system", team="performance", instance="a:8000"),
        alert("HighMemoryUsage", "warning", category="system", team="performance", instance="a:8000"),
        alert("HighMemoryUsage", "warning", category="system", team="performance", instance="b:8000"),
        # The database is down: database and API symptoms are its consequences.
        alert("PostgreSQLDown", "critical", category="database", team="platform", service="postgresql"),
        alert("DatabaseSlowQueries", "warning", category="database", team="performance"),
        alert("ApiHighErrorRate", "warning", category="api", team="platform"),
        # A scrape target down silences what is measured through it (same job), not the Watchdog.
        alert("ApiTargetDown", "critical", category="health", team="platform", service="market-feed",
              job="market-feed"),
        alert("MarketDataSlowProcessing", "warning", category="market_data", team="data", service="market-feed",
              job="market-feed"),
        alert("Watchdog", "info", category="meta", team="platform", heartbeat="true", job="market-feed"),
    ])

    def states():
        return {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("instance", a["labels"]["service"])):
                a["status"]["state"] for a in http_json(api)}

    # The inhibitor learns of new alerts asynchronously: wait until all nine are in and the
    # states read the same twice, 0.5 s apart.
    current = wait_stable(states, 10, "nine alerts settled", accept=lambda c: len(c) >= 9)
    assert current == {
        ("CriticalMemoryUsage", "critical", "a:8000"): "active",
        ("HighMemoryUsage", "warning", "a:8000"): "suppressed",
        ("HighMemoryUsage", "warning", "b:8000"): "active",  # another instance's problem
        ("PostgreSQLDown", "critical", "postgresql"): "active",
        ("DatabaseSlowQueries", "warning", "mystocks-api"): "suppressed",
        ("ApiHighErrorRate", "warning", "mystocks-api"): "suppressed",
        ("ApiTargetDown", "critical", "market-feed"): "active",
        ("MarketDataSlowProcessing", "warning", "market-feed"): "suppressed",
        ("Watchdog", "info", "mystocks-api"): "active",  # the dead man's switch is never inhibited
    }


def _states(api: str, expected: int) -> dict[tuple[str, str], str]:
    """(alertname, instance or "-") -> active/suppressed, once ``expected`` alerts are in and
    the inhibitor has seen them (it learns of new alerts asynchronously): the states must read
    the same twice, 0.5 s apart."""
    def read():
        return {(a["labels"]["alertname"], a["labels"].get("instance", "-")): a["status"]["state"]
                for a in http_json(api)}

    return wait_stable(read, 10, f"{expected} alerts settled", accept=lambda c: len(c) >= expected)


@pytest.mark.live
def test_live_instance_down_inhibits_only_that_instance(live):
    """Issue 8 row 2: api-1's target is down while api-2 serves; the job's error rate is critical
    because of api-2. Before, `equal: [job]` suppressed the job-level ApiCriticalErrorRate and
    api-2's CPU alert. Now only api-1's own alerts are suppressed; the whole job down
    (ApiJobDown) still suppresses the job-level alert (the positive control)."""
    api = f"{live['url']}/api/v2/alerts"
    http_json(api, [
        alert("ApiTargetDown", "critical", category="health", team="platform", instance="api-1:8000"),
        alert("ApiCriticalErrorRate", "critical", category="api", team="platform"),
        alert("CriticalCpuUsage", "critical", category="system", team="performance", instance="api-1:8000"),
        alert("CriticalCpuUsage", "critical", category="system", team="performance", instance="api-2:8000"),
    ])
    assert _states(api, 4) == {
        ("ApiTargetDown", "api-1:8000"): "active",
        ("ApiCriticalErrorRate", "-"): "active",  # the job-level symptom of api-2's errors
        ("CriticalCpuUsage", "api-1:8000"): "suppressed",  # blind: measured through api-1
        ("CriticalCpuUsage", "api-2:8000"): "active",  # another instance's problem
    }
    http_json(api, [alert("ApiJobDown", "critical", category="health", team="platform")])
    assert _states(api, 5)[("ApiCriticalErrorRate", "-")] == "suppressed"


def _incidents(recorder: Recorder, routing_key: str) -> set[str]:
    """PagerDuty incidents opened (one per dedup key). Call under recorder.lock, or from
    wait_for's predicate, which holds it."""
    return {body["dedup_key"] for body in recorder.paths("/pagerduty")
            if body["routing_key"] == routing_key and body["event_action"] == "trigger"}


def _incidents_now(recorder: Recorder, routing_key: str) -> set[str]:
    with recorder.lock:
        return _incidents(recorder, routing_key)


@pytest.mark.live
def test_live_one_page_per_cause_dependency_down(live):
    """Issue 8 row 4: Redis down pages once; ServiceDegradation (which counts raw ALERTS) and
    ComponentUnhealthy{component="cache"} (a health warning, which pages the PagerDuty service)
    are the same cause. PostgreSQL down and ComponentUnhealthy{component="database"} likewise.
    Before: ServiceDegradation and the health warnings stayed active and paged again, through a
    second PagerDuty service."""
    recorder, secrets, api = live["recorder"], live["secrets"], f"{live['url']}/api/v2/alerts"
    http_json(api, [
        alert("RedisDown", "critical", category="health", team="platform", service="redis", dependency="redis"),
        alert("ServiceDegradation", "critical", category="aggregated", team="platform"),
        alert("CacheCriticalHitRate", "critical", category="cache", team="performance", service="redis", cache="redis"),
        alert("ComponentUnhealthy", "warning", category="health", team="platform", service="redis",
              component="cache", instance="api-1:8000"),
        alert("PostgreSQLDown", "critical", category="health", team="platform", service="postgresql",
              dependency="postgresql"),
        alert("ComponentUnhealthy", "warning", category="health", team="platform", service="postgresql",
              component="database", instance="api-2:8000"),
    ])
    states = _states(api, 6)
    assert states == {
        ("RedisDown", "-"): "active",
        ("PostgreSQLDown", "-"): "active",
        ("ServiceDegradation", "-"): "suppressed",
        ("CacheCriticalHitRate", "-"): "suppressed",
        ("ComponentUnhealthy", "api-1:8000"): "suppressed",
        ("ComponentUnhealthy", "api-2:8000"): "suppressed",
    }, states
    recorder.wait_for(lambda r: len(_incidents(r, secrets["PAGERDUTY_ON_CALL_KEY"])) == 2, timeout=5,
                      what="one page for Redis and one for PostgreSQL")
    # A quiet 1.5 s: a third incident, or a page of the service, would arrive in it.
    holds_for(lambda: len(_incidents_now(recorder, secrets["PAGERDUTY_ON_CALL_KEY"])) == 2
              and _incidents_now(recorder, secrets["PAGERDUTY_SERVICE_KEY"]) == set(), 1.5,
              "two incidents, no service page")
    # Positive control: a component unhealthy on its own (no Down alert) still pages the service.
    http_json(api, [alert("ComponentUnhealthy", "warning", category="health", team="platform",
                          service="market-data", component="market_data", instance="api-1:8000")])
    assert _states(api, 7)[("ComponentUnhealthy", "api-1:8000")] in ("active", "suppressed")
    assert any(a["labels"].get("component") == "market_data" and a["status"]["state"] == "active"
               for a in http_json(api))


def test_labels_used_in_routing_exist_on_every_rule(rendered):
    """Issue 8 row 12: `group_by`, the inhibit rules' `equal` and the PagerDuty template read
    `service`; before, no rule set it. Every label the routing tree groups on must be on every
    rule (alertname is implicit; job is absent only on job-less rules such as the Watchdog)."""
    alerts = rule_alerts()
    if not alerts:
        pytest.skip("alerts/rules/*.yml not generated yet")
    config = yaml.safe_load(rendered.read_text())

    def group_bys(route):
        yield from route.get("group_by", [])
        for child in route.get("routes", []):
            yield from group_bys(child)

    needed = set(group_bys(config["route"])) - {"alertname", "job"}
    assert "service" in needed
    missing = [(a["alert"], sorted(needed - set(a["labels"]))) for a in alerts if needed - set(a["labels"])]
    assert not missing, missing
    assert "{{ .CommonLabels.service }}" in TEMPLATE.read_text()
