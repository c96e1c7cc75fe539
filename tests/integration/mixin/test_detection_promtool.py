"""docs/ALERTING.md's detection table against Prometheus's own rule evaluation (issue 15 row 14).

The table (mixin/mystocks_otel_mixin/docs/detection.py) states, per alert, how long its windows
need once a fault is on, against hours of healthy history. Here promtool evaluates the
repository's rules at the production interval (15 s) on series with 6 h 15 m of healthy
history (the longest page window is 6 h) and then the fault, and the alert must fire when the table says: not two evaluations
before the fault plus what the windows need plus the rule's `for`, and by two evaluations
after. The series stand for what the scrape already saw (the table's scrape and probe delays
come on top). promtool loads the alert and the recording rules it reads (transitively), taken
unchanged from alerts/rules/*.yml, recording rules first, as the table assumes: the whole rule
set over six hours at 15 s takes promtool minutes per case.
"""

from __future__ import annotations

import math
import re
import subprocess

import pytest
import yaml

from mystocks_otel_mixin import rules
from mystocks_otel_mixin.config import DEFAULT
from mystocks_otel_mixin.docs import detection

from test_alertmanager import ROOT

STEP = 15  # production scrape and evaluation interval
HISTORY = 1500  # samples of healthy history: 6 h 15 m, longer than the longest page window
AFTER = 60  # samples after the fault: 15 m, past the slowest alert here
T0 = (HISTORY + 1) * STEP  # the first sample that shows the fault
RATE = 150  # requests per scrape: 10 per second
JOB = 'job="mystocks-api", instance="api-1:8000"'


def _counter(before: int, after: int) -> str:
    """A counter growing ``before`` per sample for the history, then ``after`` per sample."""
    last = before * HISTORY
    return f"0+{before}x{HISTORY} {last + after}+{after}x{AFTER}"


def _gauge(before: float, after: float) -> str:
    return f"{before}x{HISTORY} {after}x{AFTER}"


def _requests(ok_after: int, errors_after: int, fast_after: int) -> list[dict]:
    """The HTTP duration histogram's count by status, and its le="1" bucket (answered within 1 s)."""
    return [
        {"series": f'http_server_request_duration_seconds_count{{{JOB}, http_response_status_code="200"}}',
         "values": _counter(RATE, ok_after)},
        {"series": f'http_server_request_duration_seconds_count{{{JOB}, http_response_status_code="500"}}',
         "values": _counter(0, errors_after)},
        {"series": f'http_server_request_duration_seconds_bucket{{{JOB}, http_response_status_code="200", le="1"}}',
         "values": _counter(RATE, fast_after)},
    ]


def _availability(dependency: str) -> list[dict]:
    up = [{"series": f"up{{{JOB}}}", "values": _gauge(1, 1)}]
    return up + [{"series": f'mystocks_health_dependency_availability{{{JOB}, dependency="{d}"}}',
                  "values": _gauge(1, 0 if d == dependency else 1)} for d in ("postgresql", "redis")]


def _stall() -> list[dict]:
    """The last-update timestamp stops moving. T0 is 06:15:15 UTC on a Thursday (promtool's clock
    starts at the epoch): 14:15 in Shanghai, the afternoon session open for 75 minutes."""
    return [{"series": f'mystocks_market_data_last_update_timestamp_seconds{{{JOB}, source="akshare"}}',
             "values": f"0+{STEP}x{HISTORY} {STEP * HISTORY}x{AFTER}"}]


def _pool() -> list[dict]:
    pool = f'{JOB}, pool="default", worker="0"'
    return [{"series": f"mystocks_db_connections_active{{{pool}}}", "values": _gauge(5, 15)},
            {"series": f"mystocks_db_connections_max{{{pool}}}", "values": _gauge(15, 15)}]


def _two_areas() -> list[dict]:
    """Every database statement turns slow and every Redis command fails."""
    return [{"series": f"mystocks_db_query_duration_seconds_count{{{JOB}}}", "values": _counter(RATE, RATE)},
            {"series": f"mystocks_db_slow_queries_total{{{JOB}}}", "values": _counter(0, RATE)},
            {"series": f"mystocks_redis_command_duration_seconds_count{{{JOB}}}", "values": _counter(RATE, RATE)},
            {"series": f"mystocks_redis_command_errors_total{{{JOB}}}", "values": _counter(0, RATE)}]


#: (fault of detection.FAULTS, alert, the input series of the fault).
CASES = [
    ("the API answers 5xx to every request (a bad release)", "ApiCriticalErrorRate", _requests(0, RATE, 0)),
    ("the API answers 5xx to every request (a bad release)", "ApiAvailabilityErrorBudgetBurnFast",
     _requests(0, RATE, 0)),
    ("every API request takes 1.5 s (over the latency SLO's 1 s, under the critical p95)",
     "ApiLatencyErrorBudgetBurnFast", _requests(RATE, 0, 0)),
    ("PostgreSQL goes down", "PostgreSQLDown", _availability("postgresql")),
    ("Redis goes down", "RedisDown", _availability("redis")),
    ("every instance of the API is down", "ApiJobDown", [{"series": f"up{{{JOB}}}", "values": _gauge(1, 0)}]),
    ("the market-data feed stalls during a session", "MarketDataNotUpdated", _stall()),
    ("one worker's database pool is exhausted", "DatabaseConnectionPoolExhausted", _pool()),
    # The review's case: ServiceDegradation waits for the `for` of the alerts it counts.
    ("database queries turn slow and cache commands fail (two areas degraded)", "ServiceDegradation",
     _two_areas()),
]
#: No scrape, probe or group delay: promtool's series are what the scrape saw, and its groups
#: are evaluated in order at one timestamp. What is left is the windows and the `for`s.
_NO_DELAY = detection.Intervals(scrape=0.0, evaluation=0.0, probe=0.0)


_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _rule_file(*alerts: str) -> dict:
    """The alerts and every recording rule they read, directly or through other recorded series,
    in their files' order: one recording group, then one alert group (an alert that counts
    others through ALERTS comes after them)."""
    every = [rule for path in rules.RULE_FILES
             for group in yaml.safe_load((ROOT / path).read_text())["groups"] for rule in group["rules"]]
    targets = [next(rule for rule in every if rule.get("alert") == alert) for alert in alerts]
    needed, todo = set(), {name for target in targets for name in _RECORDED.findall(target["expr"])}
    while todo:
        name = todo.pop()
        needed.add(name)
        for rule in every:
            if rule.get("record") == name:
                todo |= set(_RECORDED.findall(rule["expr"])) - needed
    records = [rule for rule in every if rule.get("record") in needed]
    return {"groups": [{"name": "recorded", "rules": records}, {"name": "alert", "rules": targets}]}


def _firing(alert: str, at: float, firing: bool) -> dict:
    return {"expr": f'count(ALERTS{{alertname="{alert}", alertstate="firing"}})', "eval_time": f"{int(at)}s",
            "exp_samples": [{"labels": "{}", "value": 1}] if firing else []}


@pytest.mark.parametrize("fault, alert, series", [pytest.param(*c, id=c[1]) for c in CASES])
def test_the_alert_fires_when_the_table_says(tmp_path, promtool, fault, alert, series):
    alerts = rules.all_alerts(DEFAULT)
    row = next(r for r in detection.rows(alerts, DEFAULT, _NO_DELAY) if r.fault == fault and r.alert.name == alert)
    due = T0 + row.expected - row.group_wait
    early = STEP * math.floor(due / STEP) - 2 * STEP
    late = STEP * math.ceil(due / STEP) + 2 * STEP
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{STEP}s",
        "group_eval_order": ["recorded", "alert"],
        "tests": [{"interval": f"{STEP}s", "input_series": series,
                   "promql_expr_test": [_firing(alert, early, False), _firing(alert, late, True)]}],
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(_rule_file(*row.signal.inputs, alert), sort_keys=False))
    path = tmp_path / "detection.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{alert}: the table says it fires {due - T0:.0f} s after the fault (windows "
        f"{row.signal.needs(DEFAULT):.0f} s + for {row.alert.for_}{', after ' + row.inputs_for if row.inputs_for else ''}); "
        "promtool disagrees:\n"
        + (result.stdout + result.stderr)[-3000:])
