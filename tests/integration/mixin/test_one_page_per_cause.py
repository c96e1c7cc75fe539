"""One PagerDuty incident per cause, whichever alert reaches Alertmanager first (issue 15 rows 9, 12).

The real Alertmanager runs the repository's config (test_alertmanager.py's ``live`` fixture);
the notification sink stands in for PagerDuty and counts incidents (one per dedup key per
routing key). Alerts are POSTed to Alertmanager's API in the order the rules fire them, the
symptom first where that is the race to win:

- row 12: PostgreSQL dies. ``ApiCriticalErrorRate`` (rule group api) and ``PostgreSQLDown``
  (rule group health) fire in the same evaluation; the API alert arrives 2 s first. Before,
  critical alerts had group_wait 0s, so the symptom paged at once and the cause opened a second
  incident (3 of 3 live runs in the review).
- row 9: the market-data feed stops. ``MarketDataNotUpdated`` (service market-data),
  ``ServiceDegradation`` (service mystocks-api, it counts the market_data and health alerts)
  and the feed's health alerts (the second PagerDuty key) were 3 incidents.

Every scenario runs beside a control in another job: the same symptoms without their cause,
which must page. The control's page also proves the symptoms' groups have been flushed (they
were created at the same moment, with the same wait), so "no second incident" is checked after
the moment it would have come.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from support import holds_for
from test_alertmanager import alert, http_json, live, rendered

#: test_alertmanager's fixtures, used here by name (pytest looks them up in this module).
FIXTURES = (live, rendered)

API, API_B = "mystocks-api", "mystocks-api-b"
#: The symptoms' group_wait (20 s critical, 30 s warning) plus the sink's and Alertmanager's slack.
FLUSHED = 45


def fault(name: str, severity: str, job: str, **labels: str) -> dict:
    """An alert whose summary names its job, so an incident's details say which job paged."""
    a = alert(name, severity, job=job, **labels)
    a["annotations"]["summary"] = f"{name} on {job}"
    return a


def incidents(recorder, routing_key: str) -> list[frozenset[str]]:
    """One entry per PagerDuty incident (dedup key) of ``routing_key``: the "<alert> on <job>" of
    every alert it was triggered for (the details' firing list), in the order they opened."""
    seen: dict[str, set[str]] = {}
    for body in recorder.paths("/pagerduty"):
        if body["routing_key"] == routing_key and body["event_action"] == "trigger":
            firing = body["payload"]["custom_details"]["firing"]
            # "- <alert>: <summary>" lines; Alertmanager sends a detail that parses as YAML as
            # what it parses to (here a list of one-key maps).
            summaries = ([v for item in firing for v in item.values()] if isinstance(firing, list)
                         else re.findall(r"^- \w+: (.+)$", firing, re.M))
            seen.setdefault(body["dedup_key"], set()).update(summaries)
    return [frozenset(names) for names in seen.values()]


def _keys(live) -> tuple[str, str]:
    return live["secrets"]["PAGERDUTY_ON_CALL_KEY"], live["secrets"]["PAGERDUTY_SERVICE_KEY"]


@pytest.mark.live
@pytest.mark.parametrize("lead", [
    pytest.param(2, id="2s-the-reviews-race"),
    # The design's bound: two rule groups are evaluated less than one interval (15 s) apart.
    pytest.param(15, id="15s-one-evaluation-interval"),
])
def test_live_symptom_before_its_cause_is_one_incident(live, lead):
    """Row 12: the API's error alert reaches Alertmanager ``lead`` seconds before PostgreSQLDown:
    one page, PostgreSQLDown's. The symptom's group waits 20 s; the cause arrives within it,
    pages at once (group_wait 0s), and inhibits the symptom before its group is flushed.

    Control (job b, no cause): ApiCriticalErrorRate and the availability fast burn page, once
    (the burn is inhibited by the ratio alert and grouped with it: issue 8 row 3)."""
    recorder, api = live["recorder"], f"{live['url']}/api/v2/alerts"
    oncall, service = _keys(live)
    http_json(api, [
        fault("ApiCriticalErrorRate", "critical", API, category="api", team="platform"),
        fault("ApiCriticalErrorRate", "critical", API_B, category="api", team="platform"),
        fault("ApiAvailabilityErrorBudgetBurnFast", "critical", API_B, category="slo", team="platform",
              slo="api-availability"),
    ])
    # The time the symptom leads by. With group_wait 0s (before) it paged in it.
    holds_for(lambda: recorder.paths("/pagerduty") == [], lead, "no page before the cause arrives")
    http_json(api, [fault("PostgreSQLDown", "critical", API, category="health", team="platform",
                          service="postgresql", dependency="postgresql")])
    # The cause pages at once...
    recorder.wait_for(lambda r: frozenset({"PostgreSQLDown on mystocks-api"}) in incidents(r, oncall),
                      timeout=5, what="PostgreSQLDown's page")
    # ...the symptoms of job b, which have no cause, page after their group_wait...
    recorder.wait_for(lambda r: len(incidents(r, oncall)) >= 2, timeout=FLUSHED, what="the control's page")
    # ...and the symptom of the known cause never does.
    holds_for(lambda: len(incidents(recorder, oncall)) == 2, 2, "two incidents")
    assert incidents(recorder, oncall) == [frozenset({"PostgreSQLDown on mystocks-api"}),
                                           frozenset({"ApiCriticalErrorRate on mystocks-api-b"})]
    assert incidents(recorder, service) == []
    states = {(a["labels"]["alertname"], a["labels"]["job"]): a["status"]["state"] for a in http_json(api)}
    assert states == {("ApiCriticalErrorRate", API): "suppressed", ("ApiCriticalErrorRate", API_B): "active",
                      ("ApiAvailabilityErrorBudgetBurnFast", API_B): "suppressed", ("PostgreSQLDown", API): "active"}
    # The webhook (every alert, JSON) saw the muted symptom neither: muted means muted everywhere.
    webhook = {(a["labels"]["alertname"], a["labels"]["job"])
               for body in recorder.paths("/custom") for a in body["alerts"]}
    assert ("ApiCriticalErrorRate", API) not in webhook and ("ApiCriticalErrorRate", API_B) in webhook


@pytest.mark.live
def test_live_market_data_feed_outage_is_one_incident(live):
    """Row 9: the feed stops. With health derived from freshness (demo/health.py) the feed's
    health alerts come first (here 2 s before the cause), then MarketDataNotUpdated, then
    ServiceDegradation, which counts the market_data and health alerts as two degraded areas.
    One incident: MarketDataNotUpdated's, on the on-call key; none on the service key.

    Control (job b, no MarketDataNotUpdated): the same health warning pages the service key and
    ServiceDegradation pages on-call, so the inhibitions are narrow (equal job)."""
    recorder, api = live["recorder"], f"{live['url']}/api/v2/alerts"
    oncall, service = _keys(live)
    feed = dict(service="market-data", category="health", team="platform")
    http_json(api, [
        fault("ComponentUnhealthy", "warning", API, component="market_data", instance="api-1:8000", **feed),
        fault("DependencyUnavailable", "warning", API, dependency="market_data_feed", **feed),
        fault("DependencyCritical", "critical", API, dependency="market_data_feed", **feed),
        fault("DependencyUnavailable", "warning", API_B, dependency="market_data_feed", **feed),
    ])
    holds_for(lambda: recorder.paths("/pagerduty") == [], 2, "no page before the cause arrives")
    http_json(api, [
        fault("MarketDataNotUpdated", "critical", API, category="market_data", team="data",
              service="market-data", source="akshare"),
        fault("StaleData", "warning", API, category="market_data", team="data", service="market-data",
              dataset="quotes"),
        fault("ServiceDegradation", "critical", API, category="aggregated", team="platform"),
        fault("ServiceDegradation", "critical", API_B, category="aggregated", team="platform"),
    ])
    recorder.wait_for(lambda r: frozenset({"MarketDataNotUpdated on mystocks-api"}) in incidents(r, oncall),
                      timeout=5, what="MarketDataNotUpdated's page")
    recorder.wait_for(lambda r: len(incidents(r, oncall)) >= 2 and incidents(r, service), timeout=FLUSHED,
                      what="the control's two pages")
    holds_for(lambda: len(incidents(recorder, oncall)) == 2 and len(incidents(recorder, service)) == 1, 2,
              "one incident per key for the control, one for the cause")
    assert incidents(recorder, oncall) == [frozenset({"MarketDataNotUpdated on mystocks-api"}),
                                           frozenset({"ServiceDegradation on mystocks-api-b"})]
    assert incidents(recorder, service) == [frozenset({"DependencyUnavailable on mystocks-api-b"})]


def _tree(amtool: str, config, labels: str) -> str:
    """The route a label set takes, as amtool prints it (``routes test --tree``)."""
    result = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", "--tree",
                             *labels.split()], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


CAUSE_BRANCH = 'alertname=~"'
MARKET = "category=market_data team=data service=market-data job=mystocks-api"
FEED_HEALTH = "category=health team=platform service=market-data job=mystocks-api"


@pytest.mark.parametrize("labels, cause, receivers", [
    # Row 12: the cause takes the at-once branch, its symptom the waiting one; both page on-call.
    pytest.param("alertname=PostgreSQLDown severity=critical category=health team=platform service=postgresql",
                 True, "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform", id="PostgreSQLDown"),
    pytest.param("alertname=ApiCriticalErrorRate severity=critical category=api team=platform service=mystocks-api",
                 False, "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform",
                 id="ApiCriticalErrorRate"),
    # Row 9: the feed's cause, and its symptoms, which route to two PagerDuty keys: only the
    # inhibition (test above, live) keeps them from paging.
    pytest.param(f"alertname=MarketDataNotUpdated severity=critical {MARKET}", True,
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,slack-data-alerts,email-data",
                 id="MarketDataNotUpdated"),
    pytest.param(f"alertname=DependencyCritical severity=critical dependency=market_data_feed {FEED_HEALTH}", False,
                 "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform", id="DependencyCritical"),
    pytest.param("alertname=ServiceDegradation severity=critical category=aggregated team=platform "
                 "service=mystocks-api", False, "webhook,slack-critical,msteams-critical,pagerduty-oncall,email-platform",
                 id="ServiceDegradation"),
    pytest.param(f"alertname=ComponentUnhealthy severity=warning component=market_data {FEED_HEALTH}", False,
                 "webhook,slack-warnings,msteams-warnings,pagerduty-service,email-platform", id="ComponentUnhealthy"),
])
def test_causes_take_the_at_once_branch_and_symptoms_wait(rendered, amtool, labels, cause, receivers):
    """amtool's own route matching: a cause matches the branch with group_wait 0s, a symptom the
    one that waits (its group_wait read from the same file), with the same receivers."""
    import yaml

    result = subprocess.run([amtool, "config", "routes", "test", f"--config.file={rendered}",
                             f"--verify.receivers={receivers}", *labels.split()],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()} (expected {receivers})"
    tree = _tree(amtool, rendered, labels)
    assert (CAUSE_BRANCH in tree) == cause, tree
    branches = {tuple(r.get("matchers", [])): r for r in yaml.safe_load(rendered.read_text())["route"]["routes"]}
    severity = next(p.split("=")[1] for p in labels.split() if p.startswith("severity="))
    branch = next(r for m, r in branches.items() if m and m[0] == f'severity="{severity}"'
                  and (len(m) == 2) == cause)
    assert (branch["group_wait"] == "0s") == cause
