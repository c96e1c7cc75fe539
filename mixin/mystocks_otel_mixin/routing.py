"""alerts/alertmanager/alertmanager.yml.tmpl, generated from the config's label vocabulary.

The routing tree, the receivers and the inhibition rules are written from ``MixinConfig``:

- one branch per severity (``cfg.routing.timers``), in ``cfg.labels.severities`` order, and a
  catch-all for a severity outside the vocabulary (a bug in a rule: made visible); before the
  page severity's branch, a twin for the alerts that name a cause (:data:`CAUSES`), which page
  at once (``cfg.routing.cause_group_wait``) while their symptoms wait the severity's
  group_wait, so the cause's inhibition is in place whichever reaches Alertmanager first;
- inside a branch, every channel that wants the alert is a child with ``continue: true``: the
  severity's Slack channel (``cfg.routing.severity_channels``) and Microsoft Teams channel
  (``cfg.routing.msteams_channels``), PagerDuty on-call for
  ``cfg.routing.page_severity``, the PagerDuty service key for the warnings of
  ``cfg.routing.service_page_categories``, each team's Slack channel
  (``cfg.routing.team_channels``) and each team lead's e-mail (``cfg.labels.teams``);
- the inhibition rules: the severities' order (a critical silences its own warning), and the
  named pairs and causes in :data:`INHIBITIONS`, whose alert names and categories are checked
  against the rules and ``cfg.labels`` when the file is generated.

The output is still a template: ``${NAME}`` placeholders (SMTP host, e-mail addresses, webhook
URLs, the secrets and templates directories) are filled in at deploy time by
``mystocks_otel_mixin.alertmanager`` (``scripts/render-alertmanager.sh``, stdlib only), and
secrets are only ever referenced through Alertmanager's ``*_file`` fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mystocks_otel_mixin.config import MAIN_DASHBOARD_UID, MixinConfig
from mystocks_otel_mixin.lib.rulekit import header

TEMPLATE_FILE = "alerts/alertmanager/alertmanager.yml.tmpl"

#: The broken thing's alerts beat its consequences. Causes first: these page by themselves, at
#: once (``routing.cause_group_wait``), and inhibit their symptoms, which wait the page
#: severity's group_wait: a symptom that reaches Alertmanager first (another rule group,
#: evaluated up to one interval earlier) is muted when its cause arrives within that wait, so
#: one cause is one incident whichever fires first.
CAUSES = ("PostgreSQLDown", "RedisDown", "ApiJobDown", "ApiTargetDown", "ApiTargetFlapping", "ApiTargetAbsent",
          "MarketDataNotUpdated", "MarketDataUpdatesAbsent")
#: The causes whose generic health alerts (same job and service) say the same thing again.
SERVICE_CAUSES = ("PostgreSQLDown", "RedisDown", "MarketDataNotUpdated", "MarketDataUpdatesAbsent")
#: Never inhibited by a down target: the target alerts themselves and the dead man's switch.
NEVER_INHIBITED = ("ApiTargetDown", "ApiJobDown", "ApiTargetAbsent", "Watchdog")


@dataclass(frozen=True)
class Inhibition:
    source: str  # a matcher: alertname="X", alertname=~"X|Y" or category=~"..."
    target: str
    equal: tuple[str, ...]
    comment: str = ""
    inline: bool = True  # one flow-style line


def _name(*names: str) -> str:
    return f'alertname="{names[0]}"' if len(names) == 1 else f'alertname=~"{"|".join(names)}"'


#: Pairs the rules name differently: the critical speaks, the warning waits. Equal on the
#: labels that identify the thing (a test at render time checks every name exists).
PAIRS = (
    ("ApiCriticalResponseTime", "ApiHighResponseTime", ("job", "service")),
    ("ApiCriticalErrorRate", "ApiHighErrorRate", ("job", "service")),
    ("DatabaseConnectionPoolExhausted", "DatabaseHighConnectionUsage", ("job", "pool")),
    ("CacheCriticalHitRate", "CacheLowHitRate", ("job", "cache")),
    ("WebSocketCriticalConnectionCount", "WebSocketHighConnectionCount", ("job", "instance")),
    ("MarketDataProcessingBlocked", "MarketDataSlowProcessing", ("job", "source")),
    ("CriticalCpuUsage", "HighCpuUsage", ("job", "instance")),
    ("CriticalMemoryUsage", "HighMemoryUsage", ("job", "instance")),
    ("CriticalDiskSpace", "LowDiskSpace", ("job", "instance", "mountpoint")),
    ("DependencyCritical", "DependencyUnavailable", ("job", "dependency")),
    ("ApiAvailabilityErrorBudgetBurnFast", "ApiAvailabilityErrorBudgetBurnSlow", ("slo",)),
    ("ApiLatencyErrorBudgetBurnFast", "ApiLatencyErrorBudgetBurnSlow", ("slo",)),
    ("MarketDataFreshnessErrorBudgetBurnFast", "MarketDataFreshnessErrorBudgetBurnSlow", ("slo",)),
)

INHIBITIONS = (
    Inhibition(_name("ApiCriticalErrorRate"), _name("ApiAvailabilityErrorBudgetBurnFast"), ("job",),
               "The fast burn and the critical ratio alert of one job say the same thing: the ratio alert\n"
               "speaks (it names the threshold), the burn alert waits. With the PagerDuty grouping above,\n"
               "even the first of them to fire opens the one incident the other joins."),
    Inhibition(_name("ApiCriticalResponseTime"), _name("ApiLatencyErrorBudgetBurnFast"), ("job",)),
    Inhibition(_name("MarketDataNotUpdated", "MarketDataUpdatesAbsent"),
               _name("MarketDataProcessingBlocked", "StaleData", "MarketDataFreshnessErrorBudgetBurnFast",
                     "MarketDataFreshnessErrorBudgetBurnSlow"), ("job",),
               "The producer stopped: blocked processing, stale data and the freshness burn follow from it.",
               inline=False),
    Inhibition(_name("ApiTargetDown"), f'alertname!~"{"|".join(NEVER_INHIBITED)}"', ("job", "instance"),
               "One instance's target is down: that instance's own alerts are blind or symptoms, and only\n"
               "those (equal job AND instance). Job-level alerts (no instance label) and the other\n"
               "replicas' alerts keep speaking: they describe what the remaining replicas do.", inline=False),
    Inhibition(_name("ApiJobDown", "ApiTargetAbsent"), f'alertname!~"{"|".join(NEVER_INHIBITED)}"', ("job",),
               "The whole job is down or gone: everything measured through it is blind or a symptom.\n"
               "The Watchdog is never inhibited: it is the dead man's switch.", inline=False),
    Inhibition(_name("PostgreSQLDown"), 'category=~"database|api|business|slo"', ("job",),
               "The database is down: pool, query, API-error and business alerts are its consequences,\n"
               "and the generic dependency alerts say the same thing again.", inline=False),
    Inhibition(_name("RedisDown"), 'category=~"cache|api|slo"', ("job",),
               "Redis is down: cache alerts (and the API latency/errors that follow) are consequences.",
               inline=False),
    Inhibition(_name(*SERVICE_CAUSES),
               _name("ComponentUnhealthy", "DependencyUnavailable", "DependencyCritical"), ("job", "service"),
               "The specific alert beats the generic health alerts of the same service\n"
               "(ComponentUnhealthy{component=\"database\"} has service=\"postgresql\", the market-data\n"
               "feed's and component's have service=\"market-data\"): one page, through one PagerDuty\n"
               "service, per cause. A feed outage is MarketDataNotUpdated's incident alone.", inline=False),
    Inhibition(_name(*CAUSES), 'category="aggregated"', ("job",),
               "A known cause pages by itself: the aggregated alerts that count its symptoms stay quiet\n"
               "(a feed outage fires market_data and health alerts: two categories for ServiceDegradation).",
               inline=False),
)

_PREAMBLE = """\
# Alertmanager configuration TEMPLATE for MyStocks (Alertmanager 0.35; msteamsv2_configs
# needs >= 0.28).
#
# The routing tree, receivers and inhibition rules are generated from MixinConfig's label
# vocabulary (severities, teams, categories) and routing settings; change them with
# `mystocks-otel render --set labels.teams=... --set routing.team_channels=...` and render.
#
# Not a usable config by itself: Alertmanager expands no environment variables, so
# `scripts/render-alertmanager.sh` (mystocks_otel_mixin.alertmanager) replaces every
# placeholder (a dollar sign, then an UPPER_CASE name in braces) from the environment,
# validates each value, and writes alerts/alertmanager/rendered/alertmanager.yml. An unknown
# placeholder is an error. Secrets are never rendered in: they are referenced through
# Alertmanager's *_file fields and written to the secrets directory (mode 0600) by the same
# script. See README.md next to this file for the routing table and the variable names.
# A bare `$x` inside {{ }} is Go template syntax and is left alone.

global:
  # Email: SMTP host/user have no *_file variant in Alertmanager, hence the render step.
  smtp_smarthost: '${SMTP_HOST}:${SMTP_PORT}'
  smtp_from: '${SMTP_FROM}'
  smtp_auth_username: '${SMTP_USER}'
  smtp_auth_password_file: '${ALERTMANAGER_SECRETS_DIR}/smtp-password'
  smtp_require_tls: ${SMTP_REQUIRE_TLS}
  resolve_timeout: 5m

templates:
  - '${ALERTMANAGER_TEMPLATES_DIR}/*.tmpl'
"""

_RULE = "# " + "-" * 87 + "\n"
_DASHBOARD = ("'{{ with (index .Alerts 0).Annotations.dashboard_url }}{{ . }}{{ else }}"
              f"${{GRAFANA_URL}}/d/{MAIN_DASHBOARD_UID}{{{{ end }}}}'")


def _placeholder(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _children(cfg: MixinConfig, severity: str, channel: str | None) -> list[str]:
    """The ``continue: true`` children of one severity's branch."""
    r = cfg.routing
    out = ["        - receiver: webhook\n          continue: true\n"]
    if channel:
        out.append(f"        - receiver: slack-{channel}\n          continue: true\n")
    teams = dict(r.msteams_channels).get(severity)
    if teams:
        out.append(f"        - receiver: msteams-{teams}\n          continue: true\n")
    if severity == r.page_severity:
        out.append("        # One page per cause: PagerDuty opens one incident per group, and this route groups\n"
                   "        # by the broken thing (job, service), not by alert name. ApiCriticalErrorRate and the\n"
                   "        # availability fast burn for one job are then one incident, not two.\n"
                   "        - receiver: pagerduty-oncall\n          group_by: [job, service]\n          continue: true\n")
    elif r.service_page_categories:
        categories = "|".join(r.service_page_categories)
        matcher = (f"category=\"{categories}\"" if len(r.service_page_categories) == 1
                   else f"category=~\"{categories}\"")
        out.append(f"        # {', '.join(r.service_page_categories).capitalize()} alerts page even as "
                   f"{severity}s (spec: \"PagerDuty: critical, and\n"
                   f"        # health alerts\"); {r.page_severity} ones already went to pagerduty-oncall above.\n"
                   f"        - matchers: ['{matcher}']\n          receiver: pagerduty-service\n"
                   "          group_by: [job, service]\n          continue: true\n")
    for team, team_channel in r.team_channels:
        out.append(f"        - matchers: ['team=\"{team}\"']\n          receiver: slack-{team_channel}\n"
                   "          continue: true\n")
    if severity == r.page_severity:
        out.append("        # Team leads get the event and its resolution, not the reminders\n"
                   "        # (reminders are what Slack and PagerDuty are for).\n")
    for team in cfg.labels.teams:
        out.append(f"        - matchers: ['team=\"{team}\"']\n          receiver: email-{team}\n"
                   f"          repeat_interval: {r.email_repeat_interval}\n          continue: true\n")
    return out


def _route(cfg: MixinConfig) -> str:
    r = cfg.routing
    timers = {severity: rest for severity, *rest in r.timers}
    channels = dict(r.severity_channels)
    default_wait, default_interval, default_repeat = timers.get(cfg.labels.severities[-1], ("30s", "5m", "4h"))
    out = [
        "\n", _RULE,
        "# Routing. Order matters: Alertmanager walks the children top-down and stops at the first\n"
        "# match unless the route says `continue: true`. So:\n"
        "#   1. Watchdog -> heartbeat ONLY (no continue): it fires forever and must never page.\n"
        "#   2. one branch per severity; inside it, every channel that wants the alert is a child\n"
        "#      with `continue: true`, so one alert reaches several receivers. Children inherit the\n"
        "#      severity's timers.\n"
        "#   3. a severity with no channel (info) reaches the JSON webhook only; a severity outside\n"
        f"#      the vocabulary ({', '.join(cfg.labels.severities)}) is a bug in a rule: made visible.\n",
        _RULE,
        "route:\n  receiver: webhook\n  group_by: [alertname, service, category]\n"
        f"  group_wait: {default_wait}\n  group_interval: {default_interval}\n  repeat_interval: {default_repeat}\n"
        "  routes:\n"
        "    # Dead man's switch: the external service alarms when these pings STOP, so repeat\n"
        "    # often and never send \"resolved\".\n"
        "    - matchers: ['alertname=\"Watchdog\"']\n      receiver: heartbeat\n"
        "      group_wait: 0s\n      group_interval: 1m\n      repeat_interval: 1m\n",
    ]
    for severity in cfg.labels.severities:
        channel = channels.get(severity)
        wait, interval, repeat = timers.get(severity, (default_wait, default_interval, default_repeat))
        if channel is None:
            out.append(f"\n    # {severity}: dashboards and the JSON webhook only; no person is notified.\n"
                       f"    - matchers: ['severity=\"{severity}\"']\n      receiver: webhook\n")
            continue
        if severity == r.page_severity:
            out.append(f"\n    # {severity} alerts that name a cause: paged at once (group_wait {r.cause_group_wait}). They\n"
                       "    # inhibit their symptoms, which wait below: whichever reaches Alertmanager first, the\n"
                       "    # cause speaks and the symptom is muted when its group is flushed.\n"
                       f"    - matchers: ['severity=\"{severity}\"', 'alertname=~\"{'|'.join(CAUSES)}\"']\n"
                       f"      receiver: webhook\n      group_wait: {r.cause_group_wait}\n"
                       f"      group_interval: {interval}\n      repeat_interval: {repeat}\n      routes:\n")
            out.extend(_children(cfg, severity, channel))
            out.append(f"\n    # {severity}: group_wait {wait} (one evaluation interval plus delivery: a cause fired in the\n"
                       "    # same evaluation by another rule group, which Prometheus evaluates up to one interval\n"
                       "    # apart, arrives within it and inhibits this alert before it pages), repeated every\n"
                       f"    # {repeat} while firing.\n")
        else:
            out.append(f"\n    # {severity}: group_wait {wait}, repeated every {repeat} while firing.\n")
        out.append(f"    - matchers: ['severity=\"{severity}\"']\n      receiver: webhook\n"
                   f"      group_wait: {wait}\n      group_interval: {interval}\n      repeat_interval: {repeat}\n"
                   "      routes:\n")
        out.extend(_children(cfg, severity, channel))
    fallback = channels.get(cfg.labels.severities[1] if len(cfg.labels.severities) > 1 else "")
    out.append("\n    # A rule without a known severity is a bug in the rules; make it visible to engineering\n"
               "    # instead of letting it vanish into the webhook.\n"
               f"    - matchers: ['severity!~\"{'|'.join(cfg.labels.severities)}\"']\n      receiver: webhook\n"
               "      routes:\n        - receiver: webhook\n          continue: true\n"
               + (f"        - receiver: slack-{fallback}\n" if fallback else ""))
    return "".join(out)


def _inhibitions(cfg: MixinConfig, alert_names: frozenset[str]) -> str:
    severities = cfg.labels.severities
    out = ["\n", _RULE,
           "# Inhibition: during an incident the higher-priority alert speaks, the rest stay quiet.\n"
           "# An `equal` label absent on both sides counts as equal: listing an identifying label that\n"
           "# a rule does not set is harmless, and splits the pair where it is set (two instances).\n",
           _RULE, "inhibit_rules:\n",
           "  # One rule at two severities under one name: only the more severe one notifies.\n"]
    for i, severity in enumerate(severities[:-1]):
        lower = severities[i + 1:]
        target = f'severity="{lower[0]}"' if len(lower) == 1 else f'severity=~"{"|".join(lower)}"'
        out.append(f"  - source_matchers: ['severity=\"{severity}\"']\n    target_matchers: ['{target}']\n"
                   "    equal: [alertname, service]\n")
    out.append("\n  # The rules name their warning/critical pairs differently (checked against the rules when\n"
               "  # this file is generated). Equal on the labels that identify the thing.\n")
    rules = [Inhibition(_name(a), _name(b), equal) for a, b, equal in PAIRS] + list(INHIBITIONS)
    for rule in rules:
        for matcher in (rule.source, rule.target):
            check_matcher(matcher, cfg, alert_names)
        if rule.comment:
            out.append("\n" + "".join(f"  # {line}\n" for line in rule.comment.splitlines()))
        equal = ", ".join(rule.equal)
        if rule.inline:
            out.append(f"  - {{source_matchers: ['{rule.source}'], target_matchers: ['{rule.target}'], "
                       f"equal: [{equal}]}}\n")
        else:
            out.append(f"  - source_matchers: ['{rule.source}']\n    target_matchers: ['{rule.target}']\n"
                       f"    equal: [{equal}]\n")
    return "".join(out)


def check_matcher(matcher: str, cfg: MixinConfig, alert_names: frozenset[str]) -> None:
    label, _, pattern = matcher.partition("=")
    label = label.rstrip("!")
    values = set(pattern.strip('~"').split("|"))
    if label == "alertname" and not values <= alert_names:
        raise ValueError(f"routing.INHIBITIONS: {matcher}: no alert rule named {', '.join(sorted(values - alert_names))}")
    if label == "category" and not values <= set(cfg.labels.categories):
        raise ValueError(f"routing.INHIBITIONS: {matcher}: categories {', '.join(sorted(values - set(cfg.labels.categories)))} "
                         f"are not in labels.categories")


def _slack(channel: str, text: str, buttons: bool) -> str:
    out = (f"\n  - name: slack-{channel}\n    slack_configs:\n"
           f"      - api_url_file: '${{ALERTMANAGER_SECRETS_DIR}}/slack-{channel}.url'\n"
           f"        channel: '#mystocks-{channel}'\n        send_resolved: true\n"
           "        color: '{{ template \"mystocks.slack.color\" . }}'\n"
           "        title: '{{ template \"mystocks.title\" . }}'\n")
    if buttons:
        out += "        # The dashboard link the on-call needs: the rule's own, else the main dashboard.\n"
    out += (f"        title_link: {_DASHBOARD}\n"
            f"        text: '{{{{ template \"{text}\" . }}}}'\n")
    if buttons:
        out += ("        actions:\n"
                f"          - type: button\n            text: 'Dashboard'\n            url: {_DASHBOARD}\n"
                "          - type: button\n            text: 'Runbook'\n"
                "            url: '{{ (index .Alerts 0).Annotations.runbook_url }}'\n"
                "          - type: button\n            text: 'Silence'\n"
                "            url: '{{ template \"mystocks.silence_url\" . }}'\n")
    return out


def _msteams(channel: str, text: str) -> str:
    return (f"  - name: msteams-{channel}\n    msteamsv2_configs:\n"
            f"      - webhook_url_file: '${{ALERTMANAGER_SECRETS_DIR}}/msteams-{channel}.url'\n"
            "        send_resolved: true\n"
            "        title: '{{ template \"mystocks.title\" . }}'\n"
            f"        text: '{{{{ template \"{text}\" . }}}}'\n")


def _pagerduty(name: str, key_file: str, severity: str) -> str:
    return (f"  - name: {name}\n    pagerduty_configs:\n"
            f"      - routing_key_file: '${{ALERTMANAGER_SECRETS_DIR}}/{key_file}'\n"
            "        url: '${PAGERDUTY_URL}'\n        send_resolved: true\n"
            f"        severity: {severity}\n"
            "        description: '{{ template \"mystocks.pagerduty.description\" . }}'\n"
            "        client: 'MyStocks Alertmanager'\n"
            "        client_url: '{{ template \"mystocks.silence_url\" . }}'\n"
            "        details:\n"
            "          firing: '{{ template \"mystocks.pagerduty.details\" . }}'\n"
            "          service: '{{ .CommonLabels.service }}'\n"
            "          category: '{{ .CommonLabels.category }}'\n"
            "          priority: '{{ .CommonLabels.priority }}'\n"
            "          runbook: '{{ (index .Alerts 0).Annotations.runbook_url }}'\n"
            f"          dashboard: {_DASHBOARD}\n")


def _receivers(cfg: MixinConfig) -> str:
    r = cfg.routing
    out = ["\n", _RULE, "# Receivers. Message bodies live in templates/mystocks.tmpl.\n", _RULE, "receivers:\n",
           "  # Everything, as Alertmanager's webhook JSON (version 4): the custom systems, and the\n"
           "  # app's alert-lifecycle endpoint that turns notifications into mystocks_alert_* metrics.\n"
           "  - name: webhook\n    webhook_configs:\n      - url: '${WEBHOOK_URL}'\n        send_resolved: true\n"
           "      - url: '${APP_ALERT_WEBHOOK_URL}'\n        send_resolved: true\n        http_config:\n"
           "          authorization:\n            type: Bearer\n"
           "            credentials_file: '${ALERTMANAGER_SECRETS_DIR}/alert-webhook.token'\n",
           "\n  - name: heartbeat\n    webhook_configs:\n      - url: '${HEARTBEAT_URL}'\n        send_resolved: false\n"]
    for severity, channel in r.severity_channels:
        page = severity == r.page_severity
        out.append(_slack(channel, "mystocks.slack.critical.text" if page else "mystocks.slack.text", page))
    for _team, channel in r.team_channels:
        out.append(_slack(channel, "mystocks.slack.text", False))
    if r.msteams_channels:
        out.append("\n  # Microsoft Teams, beside Slack: a Workflows webhook (\"When a Teams webhook request is\n"
                   "  # received\") per channel; the URL carries its signature, so it is read from a file.\n")
    for i, (_severity, channel) in enumerate(r.msteams_channels):
        out.append(("\n" if i else "") + _msteams(channel, "mystocks.msteams.text"))
    out.append("\n  # Two PagerDuty services (Events API v2 integration keys): the on-call escalation\n"
               f"  # policy for {r.page_severity} alerts, and the MyStocks service for "
               f"{'/'.join(r.service_page_categories)} warnings.\n")
    out.append(_pagerduty("pagerduty-oncall", "pagerduty-on-call.key", r.page_severity))
    out.append("\n" + _pagerduty("pagerduty-service", "pagerduty-service.key", "warning"))
    out.append("\n  # Team leads, one address per team (team label set by every rule).\n")
    for i, team in enumerate(cfg.labels.teams):
        out.append(("\n" if i else "") + f"  - name: email-{team}\n    email_configs:\n"
                   f"      - to: '${{EMAIL_TEAM_{_placeholder(team)}}}'\n        send_resolved: true\n"
                   "        headers:\n          Subject: '{{ template \"mystocks.email.subject\" . }}'\n"
                   "        html: '{{ template \"mystocks.email.html\" . }}'\n"
                   "        text: '{{ template \"mystocks.email.text\" . }}'\n")
    return "".join(out)


def template(cfg: MixinConfig) -> str:
    from mystocks_otel_mixin import rules

    names = frozenset(a.name for a in rules.all_alerts(cfg))
    return (header(__name__) + _PREAMBLE + _route(cfg) + _inhibitions(cfg, names) + _receivers(cfg))


def generate(cfg: MixinConfig) -> dict[str, str]:
    return {TEMPLATE_FILE: template(cfg)}
