"""``POST /alerts/webhook``: Alertmanager notifications become the alert-lifecycle metrics.

Validation, auth and the tracker's bookkeeping run in-process. The metric effects are read
from ``/metrics`` of ``webhook_app.py`` under ``mystocks_otel.testing.capture_metrics`` (which
resets the process-wide MeterProvider before and after). The last test feeds the endpoint from the real Alertmanager.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import free_port, wait_until
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mystocks_otel.alert_webhook import AlertTracker, alert_webhook_router, parse_payload

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent  # webhook_app.py, the app under test
TOKEN = "token-0123456789abcdef"


def am_alert(fingerprint: str, status: str = "firing", severity: str = "critical", category: str = "api",
             starts: str = "2026-11-24T10:00:00.123456789Z", ends: str = "0001-01-01T00:00:00Z") -> dict:
    """One alert as Alertmanager 0.25 sends it (nanosecond timestamps, zero endsAt while firing)."""
    return {"status": status, "labels": {"alertname": f"A{fingerprint}", "severity": severity,
                                         "category": category, "service": "mystocks-api"},
            "annotations": {"summary": "s"}, "startsAt": starts, "endsAt": ends,
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def payload(*alerts: dict, status: str = "firing") -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"A\"}", "truncatedAlerts": 0, "status": status,
            "receiver": "webhook", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


@pytest.fixture
def client():
    app = FastAPI()
    app.include_router(alert_webhook_router(token=TOKEN))
    return TestClient(app)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- validation and auth: 4xx with a clear message, never a 500 -------------------------

@pytest.mark.parametrize("body, status, message", [
    (b"not json", 400, "body is not valid JSON"),
    (b"", 400, "body is not valid JSON"),
    (b"[" * 100_000, 400, "body is not valid JSON"),  # nesting bomb: RecursionError, not 500
    (b"[]", 422, "body must be a JSON object"),
    (json.dumps({"version": "3", "alerts": []}).encode(), 422, "unsupported version '3'"),
    (json.dumps({"version": "4"}).encode(), 422, "alerts must be a list"),
    (json.dumps(payload("x")).encode(), 422, "alerts[0] must be an object"),
    (json.dumps(payload({**am_alert("a"), "status": "pending"})).encode(), 422, "alerts[0].status must be"),
    (json.dumps(payload({**am_alert("a"), "labels": {"severity": 1}})).encode(), 422,
     "alerts[0].labels must be an object of strings"),
    (json.dumps(payload(am_alert("a"), {**am_alert("b"), "fingerprint": None})).encode(), 422,
     "alerts[1].fingerprint must be a non-empty string"),
    (json.dumps(payload({**am_alert("a"), "startsAt": "yesterday"})).encode(), 422,
     "alerts[0].startsAt='yesterday' is not an RFC 3339 timestamp"),
    (json.dumps(payload({**am_alert("a"), "startsAt": "2026-13-45T99:00:00Z"})).encode(), 422,
     "is not a valid date"),
])
def test_malformed_payloads_get_a_4xx_with_a_clear_message(client, body, status, message):
    response = client.post("/alerts/webhook", content=body, headers=AUTH)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_bearer_token_is_required_when_configured(client):
    body = payload(am_alert("a"))
    assert client.post("/alerts/webhook", json=body).status_code == 401
    wrong = client.post("/alerts/webhook", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    # Non-ASCII must not crash hmac.compare_digest into a 500.
    assert client.post("/alerts/webhook", json=body, headers={"Authorization": "Bearer é".encode()}).status_code == 401
    assert client.post("/alerts/webhook", json=body, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.post("/alerts/webhook", json=body, headers=AUTH).status_code == 200


def test_no_token_means_open_and_route_is_not_in_the_schema():
    app = FastAPI()
    app.include_router(alert_webhook_router(allow_unauthenticated=True))
    client = TestClient(app)
    assert client.post("/alerts/webhook", json=payload(am_alert("a"))).json()["fired"] == 1
    assert "/alerts/webhook" not in client.get("/openapi.json").json()["paths"]


# -- the tracker: one event per alert, however often it is notified ---------------------

def test_repeated_notifications_count_once_and_resolution_ends_tracking(client):
    post = lambda *alerts: client.post("/alerts/webhook", json=payload(*alerts), headers=AUTH).json()  # noqa: E731
    first = post(am_alert("a"), am_alert("b", severity="warning", category="database"))
    assert (first["fired"], first["resolved"]) == (2, 0)
    assert first["active"] == {"critical": 1, "warning": 1, "info": 0, "other": 0}
    repeat = post(am_alert("a"), am_alert("b", severity="warning", category="database"))
    assert (repeat["fired"], repeat["resolved"]) == (0, 0)  # repeat_interval re-sends: not new
    resolved = post(am_alert("a", status="resolved", ends="2026-11-24T10:05:00Z"),
                    am_alert("b", severity="warning", category="database"))
    assert (resolved["fired"], resolved["resolved"]) == (0, 1)
    assert resolved["active"] == {"critical": 0, "warning": 1, "info": 0, "other": 0}
    again = post(am_alert("a", status="resolved", ends="2026-11-24T10:05:00Z"))
    assert again["resolved"] == 0  # resolved alerts stay in later group notifications
    odd = post(am_alert("c", severity="page-me"))
    assert odd["active"]["other"] == 1


def test_tracking_is_bounded_and_forgets_stale_alerts():
    now = [0.0]
    tracker = AlertTracker(max_tracked=3, stale_after_seconds=100, clock=lambda: now[0])
    tracker.apply(parse_payload(payload(*(am_alert(str(i)) for i in range(5)))))
    assert len(tracker) == 3  # the two oldest were evicted
    now[0] = 50
    tracker.apply(parse_payload(payload(am_alert("4"))))  # refreshed
    now[0] = 120
    result = tracker.apply(parse_payload(payload()))
    assert len(tracker) == 1 and result["active"]["critical"] == 1  # "2" and "3" went stale


def test_concurrent_payloads_keep_consistent_state():
    from concurrent.futures import ThreadPoolExecutor

    tracker = AlertTracker(max_tracked=10_000)
    batches = [parse_payload(payload(*(am_alert(f"{b}-{i}") for i in range(50)))) for b in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(tracker.apply, batches + batches))
    assert sum(r["fired"] for r in results) == 2000 and len(tracker) == 2000


# -- the metrics, through setup_telemetry and /metrics ----------------------------------

def metrics_after(*bodies: dict) -> dict[tuple[str, tuple], float]:
    """Post ``bodies`` to a fresh app's webhook and read the lifecycle series off its /metrics.

    In-process: the testing module's capture resets the process-wide telemetry before and after."""
    from mystocks_otel.testing import capture_metrics

    from webhook_app import create_app

    with capture_metrics():
        client = TestClient(create_app())
        for body in bodies:
            assert client.post("/alerts/webhook", json=body).status_code == 200
        text = client.get("/metrics").text
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_")))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("mystocks_alert_")}


def test_lifecycle_metrics_on_the_metrics_page():
    metrics = metrics_after(
        payload(am_alert("a"), am_alert("b", severity="warning", category="database")),
        payload(am_alert("a"), am_alert("b", severity="warning", category="database")),  # a repeat
        payload(am_alert("a", status="resolved", starts="2026-11-24T10:00:00Z", ends="2026-11-24T10:07:30Z"),
                am_alert("b", severity="warning", category="database")),
    )
    assert metrics[("mystocks_alert_fired_total", (("category", "api"), ("severity", "critical")))] == 1
    assert metrics[("mystocks_alert_fired_total", (("category", "database"), ("severity", "warning")))] == 1
    assert metrics[("mystocks_alert_resolved_total", (("category", "api"), ("severity", "critical")))] == 1
    assert metrics[("mystocks_alert_active", (("severity", "critical"),))] == 0
    assert metrics[("mystocks_alert_active", (("severity", "warning"),))] == 1
    assert metrics[("mystocks_alert_resolution_duration_seconds_sum", (("severity", "critical"),))] == 450
    # 450 s falls in the (300, 600] bucket of RESOLUTION_BUCKETS.
    assert metrics[("mystocks_alert_resolution_duration_seconds_bucket", (("le", "300.0"), ("severity", "critical")))] == 0
    assert metrics[("mystocks_alert_resolution_duration_seconds_bucket", (("le", "600.0"), ("severity", "critical")))] == 1


# -- live: the real Alertmanager posts to the app's endpoint ------------------------------

def _get(url: str, timeout: float = 2.0) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


@pytest.mark.live
def test_live_alertmanager_feeds_the_lifecycle_metrics(tmp_path, alertmanager_binary):
    import urllib.request

    from mystocks_otel_mixin.alertmanager import render_alertmanager_config, write_secret_files

    app_port, am_port, dead = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MYSTOCKS_OTEL_"))}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}", ALERT_WEBHOOK_TOKEN=TOKEN)
    from dataclasses import replace

    from mystocks_otel_dev.stack import processes

    with processes.Processes(tmp_path) as procs:  # the one harness: stopped even when the test fails
        procs.start(replace(processes.uvicorn("webhook_app:app", app_port, "--log-level", "warning", env=env,
                                              name="app", ready_path="/metrics", cwd=str(tmp_path)),
                            inherit_env=False))
        # Only the app listens; every other receiver points at a closed port (and fails, logged).
        nowhere = f"http://127.0.0.1:{dead}"
        render_alertmanager_config(ROOT / "alerts/alertmanager/alertmanager.yml.tmpl", tmp_path / "am.yml", {
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(dead), "SMTP_USER": "u", "SMTP_FROM": "am@example.com",
            "EMAIL_TEAM_PLATFORM": "p@example.com", "EMAIL_TEAM_DATA": "d@example.com",
            "EMAIL_TEAM_PERFORMANCE": "f@example.com", "WEBHOOK_URL": nowhere, "HEARTBEAT_URL": nowhere,
            "PAGERDUTY_URL": nowhere, "APP_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{app_port}/alerts/webhook",
            "ALERTMANAGER_SECRETS_DIR": str(tmp_path / "secrets"),
            "ALERTMANAGER_TEMPLATES_DIR": str(ROOT / "alerts/alertmanager/templates")})
        write_secret_files(tmp_path / "secrets", {"ALERT_WEBHOOK_TOKEN": TOKEN}, allow_missing=True)
        procs.start(processes.alertmanager(tmp_path / "am.yml", tmp_path / "data", am_port,
                                           binary=alertmanager_binary))

        alert = {"labels": {"alertname": "APICriticalErrorRate", "severity": "critical", "category": "api",
                            "team": "platform", "service": "mystocks-api"},
                 "annotations": {"summary": "5xx above 5%"}}
        request = urllib.request.Request(f"http://127.0.0.1:{am_port}/api/v2/alerts", method="POST",
                                         data=json.dumps([alert]).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).close()

        def fired() -> bool:
            text = _get(f"http://127.0.0.1:{app_port}/metrics")
            values = {(s.name, s.labels.get("severity"), s.labels.get("category")): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}
            return (values.get(("mystocks_alert_fired_total", "critical", "api")) == 1
                    and values.get(("mystocks_alert_active", "critical", None)) == 1)

        # critical: group_wait 20 s (a symptom waits for its cause to inhibit it), and the bearer
        # token from credentials_file is accepted.
        wait_until(fired, 30, "mystocks_alert_fired_total / mystocks_alert_active on the app's /metrics")
