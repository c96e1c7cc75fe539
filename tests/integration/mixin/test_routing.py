"""The Alertmanager routing tree is generated from MixinConfig's label vocabulary
(mystocks_otel_mixin.routing): a team or channel added to the config reaches amtool's
routing, the render step asks for its address and its secret, and an inhibition naming an
alert the rules do not have fails at render time.

The committed template's routes are tested row by row in test_alertmanager.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from mystocks_otel_mixin import routing
from mystocks_otel_mixin.alertmanager import AlertmanagerConfigError, render_text, secrets_for, settings_for
from mystocks_otel_mixin.config import DEFAULT

ENV = {
    "SMTP_HOST": "smtp.example.com", "SMTP_USER": "alerts@example.com", "SMTP_FROM": "am@example.com",
    "EMAIL_TEAM_PLATFORM": "platform@example.com", "EMAIL_TEAM_DATA": "data@example.com",
    "EMAIL_TEAM_PERFORMANCE": "perf@example.com", "WEBHOOK_URL": "https://hooks.example.com/x",
    "APP_ALERT_WEBHOOK_URL": "http://api:8000/alerts/webhook", "HEARTBEAT_URL": "https://hb.example.com/p",
}
OPS = DEFAULT.with_overrides({"labels.teams": "platform,data,performance,ops",
                              "routing.team_channels": "performance=performance,data=data-alerts,ops=ops-pager"})


def _routes(amtool: str, config_file, labels: str) -> str:
    result = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config_file}", *labels.split()],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_a_team_added_to_the_config_is_routed(tmp_path, amtool):
    template = routing.template(OPS)
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(render_text(template, {**ENV, "EMAIL_TEAM_OPS": "ops@example.com"}))
    check = subprocess.run([amtool, "check-config", str(rendered)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _routes(amtool, rendered, "severity=warning category=api team=ops") == \
        "webhook,slack-warnings,msteams-warnings,slack-ops-pager,email-ops"
    assert _routes(amtool, rendered, "severity=critical category=api team=ops") == \
        "webhook,slack-critical,msteams-critical,pagerduty-oncall,slack-ops-pager,email-ops"
    # The existing teams route as before.
    assert _routes(amtool, rendered, "severity=warning category=health team=platform") == \
        "webhook,slack-warnings,msteams-warnings,pagerduty-service,email-platform"
    receivers = {r["name"] for r in yaml.safe_load(rendered.read_text())["receivers"]}
    assert receivers == set(OPS.routing.receivers(OPS.labels))


def test_the_render_step_asks_for_what_the_template_uses():
    template = routing.template(OPS)
    assert "EMAIL_TEAM_OPS" in {s.name for s in settings_for(template)}
    assert "SLACK_WEBHOOK_URL_OPS_PAGER" in {s.env for s in secrets_for(template)}
    with pytest.raises(AlertmanagerConfigError, match="EMAIL_TEAM_OPS is not set: expected one e-mail address"):
        render_text(template, ENV)
    # The committed template reads exactly the default secrets.
    committed = routing.template(DEFAULT)
    assert [s.filename for s in secrets_for(committed)] == [
        "slack-critical.url", "slack-warnings.url", "slack-performance.url", "slack-data-alerts.url",
        "msteams-critical.url", "msteams-warnings.url",
        "pagerduty-on-call.key", "pagerduty-service.key", "smtp-password", "alert-webhook.token"]


def test_teams_channels_come_from_the_config(tmp_path, amtool):
    """Microsoft Teams beside Slack is `routing.msteams_channels`: a channel per severity, its
    receiver and its secret; `--set routing.msteams_channels=` leaves Teams out entirely."""
    pager = DEFAULT.with_overrides({"routing.msteams_channels": "critical=oncall"})
    rendered = tmp_path / "pager.yml"
    rendered.write_text(render_text(routing.template(pager), ENV))
    assert _routes(amtool, rendered, "severity=critical category=api team=platform") == \
        "webhook,slack-critical,msteams-oncall,pagerduty-oncall,email-platform"
    assert _routes(amtool, rendered, "severity=warning category=api team=platform") == \
        "webhook,slack-warnings,email-platform"
    assert "MSTEAMS_WEBHOOK_URL_ONCALL" in {s.env for s in secrets_for(routing.template(pager))}

    none = DEFAULT.with_overrides({"routing.msteams_channels": ""})
    template = routing.template(none)
    assert "msteamsv2_configs:" not in template and "receiver: msteams" not in template
    assert not any(s.env.startswith("MSTEAMS_") for s in secrets_for(template))
    rendered.write_text(render_text(template, ENV))
    check = subprocess.run([amtool, "check-config", str(rendered)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_timers_and_severities_come_from_the_config(tmp_path, amtool):
    cfg = DEFAULT.with_overrides({"routing.timers": "critical:10s:1m:30m,warning:1m:5m:2h,info:30s:5m:4h"})
    route = yaml.safe_load(render_text(routing.template(cfg), ENV))["route"]
    critical = next(r for r in route["routes"] if r.get("matchers") == ['severity="critical"'])
    assert (critical["group_wait"], critical["repeat_interval"]) == ("10s", "30m")
    unknown = next(r for r in route["routes"] if r.get("matchers", [""])[0].startswith("severity!~"))
    assert unknown["matchers"] == ['severity!~"critical|warning|info"']


def test_an_inhibition_must_name_real_alerts_and_categories():
    with pytest.raises(ValueError, match="no alert rule named Nope"):
        routing.check_matcher('alertname=~"ApiJobDown|Nope"', DEFAULT, frozenset({"ApiJobDown"}))
    with pytest.raises(ValueError, match="categories nowhere are not in labels.categories"):
        routing.check_matcher('category=~"api|nowhere"', DEFAULT, frozenset())
