"""docs/ALERTING.md's "Detection time" section: computed from the rules when they are rendered.

For every fault a page-severity alert exists for, the time from the fault to its first page
under production intervals, from:

- the rule's own `for` (read from ``rules.all_alerts(cfg)`` at render time, so a changed `for`
  changes the table: tests/unit/mixin/test_docs.py and the generated-files test pin that);
- the `for` of every alert it counts through ``ALERTS`` (ServiceDegradation waits for its
  inputs to fire first);
- what the rule's range windows need once the fault is on, against at least 6 h of healthy
  history, the longest page window (a 5% error ratio over 5m needs 15 s of 100% errors; a fast
  burn's 1h window needs 14.4x the budget's share of the hour) — stated per alert below from
  ``MixinConfig``'s thresholds and SLOs, checked to be a window the expression reads, and
  checked against promtool evaluating the rules at 15 s on such history
  (tests/integration/mixin/test_detection_promtool.py);
- the scrape, evaluation and health-probe intervals (a fault is seen at the next scrape; a
  recorded series one group evaluation later; a condition at the next evaluation);
- the routing's group_wait (``routing.CAUSES`` page at once, other criticals wait).

Expected values use half an interval for each wait on the next tick; the worst case a whole
one. The live suite (``pytest -m live tests/live``) measures the same faults on the whole stack
under the test overlay (1 s intervals, every `for` divided by 30, no history);
``MYSTOCKS_DETECTION_OUT=mixin/mystocks_otel_mixin/docs/detection-times.json`` keeps its run,
shown beside the computed values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Callable, Sequence

from mystocks_otel_mixin import routing
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.rulekit import Alert

#: Package data (mixin/pyproject.toml's package-data), written by the live suite; read through
#: importlib.resources, so an installed wheel renders the same section as a checkout.
DATA: Traversable = resources.files(__package__).joinpath("detection-times.json")
#: The spec's target for the mean time to detect of P0 pages.
TARGET_SECONDS = 120.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", duration))


@dataclass(frozen=True)
class Intervals:
    """prometheus/prometheus.yml's scrape and evaluation intervals (test_docs checks them) and the
    library's health-probe interval (``MYSTOCKS_OTEL_PROBE_INTERVAL``, default 15 s)."""

    scrape: float = 15.0
    evaluation: float = 15.0
    probe: float = 15.0


PRODUCTION = Intervals()
#: The live suite's overlay (devtools' stack/configs.py; test_docs checks they agree): 1 s
#: intervals, every `for` divided by 30, every non-zero group_wait 1 s.
OVERLAY = Intervals(scrape=1.0, evaluation=1.0, probe=1.0)
OVERLAY_FOR_DIVISOR = 30
OVERLAY_GROUP_WAIT = 1.0
#: The live suite's slack on its bound (tests/live/test_faults.py).
LIVE_SLACK = 5.0


@dataclass(frozen=True)
class Signal:
    """How one alert's condition comes true in a fault."""

    alert: str
    #: Seconds of the fault before the rule's windows cross its threshold, given hours of
    #: healthy history (0: the first sample that shows the fault does).
    needs: Callable[[MixinConfig], float]
    why: str
    #: A range or recorded window the expression reads (checked to appear in it); "" for none.
    window: str = ""
    #: "scrape": the next scrape shows the fault; "probe": the next health probe, then a scrape;
    #: "clock": ``time()`` alone moves the expression (no new sample needed).
    source: str = "scrape"
    #: Read through a recording rule: one more group evaluation before the alert sees it.
    recorded: bool = False
    #: Alerts it counts through ALERTS in this fault: they must fire first.
    inputs: tuple[str, ...] = ()
    #: The alert of the same fault that inhibits it in Alertmanager (it never pages then).
    behind: str = ""


@dataclass(frozen=True)
class Fault:
    name: str
    signals: tuple[Signal, ...]


def _burn_needs(slo: str) -> Callable[[MixinConfig], float]:
    """A 100%-bad fault against a clean history: each page window pair fires once both windows
    hold factor x budget of bad events; the earlier pair wins."""
    def needs(cfg: MixinConfig) -> float:
        budget = cfg.slo(slo).error_budget
        pairs = [(seconds(long), seconds(short), f) for sev, long, short, f in cfg.burn_rates
                 if sev == cfg.routing.page_severity]
        return min(max(long, short) * f * budget for long, short, f in pairs)
    return needs


def _const(value: float) -> Callable[[MixinConfig], float]:
    return lambda cfg: value


#: The faults a page exists for, and how each of their alerts comes true. One place to state,
#: per alert, what its windows need: the rest (intervals, `for`, waits) is read from the rules
#: and the routing when the docs are rendered.
FAULTS: tuple[Fault, ...] = (
    Fault("the API answers 5xx to every request (a bad release)", (
        Signal("ApiCriticalErrorRate", lambda c: c.thresholds.api_error_ratio_critical * 300,
               "the 5m 5xx ratio passes the critical share after that share of 5 minutes", "5m", recorded=True),
        Signal("ApiAvailabilityErrorBudgetBurnFast", _burn_needs("api-availability"),
               "the 1h and 5m error ratios pass 14.4x the 0.1% budget (6h/30m: 6x)", "1h", recorded=True,
               behind="ApiCriticalErrorRate"),
    )),
    Fault("every API request takes over the critical p95 (2.5 s)", (
        Signal("ApiCriticalResponseTime", _const(0.05 * 300),
               "the 5m p95 passes once 5% of the 5m window's requests are slow", "5m", recorded=True),
        Signal("ApiLatencyErrorBudgetBurnFast", _burn_needs("api-latency"),
               "the 1h and 5m latency-SLI error ratios pass 14.4x the 1% budget", "1h", recorded=True,
               behind="ApiCriticalResponseTime"),
    )),
    Fault("every API request takes 1.5 s (over the latency SLO's 1 s, under the critical p95)", (
        Signal("ApiLatencyErrorBudgetBurnFast", _burn_needs("api-latency"),
               "the 1h ratio passes 14.4x the 1% budget only after 14.4% of an hour (8.6 min) of slow "
               "requests: by design, a fast burn is 2% of the month's budget", "1h", recorded=True),
    )),
    Fault("PostgreSQL goes down", (
        Signal("PostgreSQLDown", _const(0), "the next health probe fails", source="probe"),
        Signal("ApiCriticalErrorRate", lambda c: c.thresholds.api_error_ratio_critical * 300,
               "requests that need the database fail", "5m", recorded=True, behind="PostgreSQLDown"),
    )),
    Fault("Redis goes down", (
        Signal("RedisDown", _const(0), "the next health probe fails", source="probe"),
    )),
    Fault("the market-data feed stalls during a session", (
        Signal("MarketDataNotUpdated", lambda c: c.thresholds.stale_data_seconds,
               "time() - last update passes the stale threshold (40 missed 3 s snapshots)", source="clock"),
        Signal("MarketDataProcessingBlocked", _const(300),
               "the 5m processing rate reaches 0 when the window holds no point", "5m", recorded=True,
               behind="MarketDataNotUpdated"),
        Signal("DependencyCritical", lambda c: (1 - c.thresholds.dependency_availability_critical) * 600,
               "the feed's 10m availability falls under the threshold", "10m", source="probe",
               behind="MarketDataNotUpdated"),
        Signal("MarketDataFreshnessErrorBudgetBurnFast",
               lambda c: c.slo("market-data-freshness").threshold_seconds + _burn_needs("market-data-freshness")(c),
               "freshness turns bad after 60 s, then the 1h ratio needs 14.4% of an hour", "1h",
               recorded=True, behind="MarketDataNotUpdated"),
    )),
    Fault("the producer never starts after a restart (no last-update series)", (
        Signal("MarketDataUpdatesAbsent", _const(0), "the series is absent from the first scrape"),
    )),
    Fault("every instance of the API is down", (
        Signal("ApiJobDown", _const(0), "the next scrape fails"),
        Signal("ApiTargetDown", _const(0), "the next scrape fails"),
    )),
    Fault("one API instance is down, the others serve", (
        Signal("ApiTargetDown", _const(0), "the next scrape of that instance fails"),
    )),
    Fault("traffic stops reaching the API in a session (load balancer, DNS, certificate)", (
        Signal("ApiTrafficCollapse", lambda c: (1 - c.thresholds.traffic_collapse_ratio) * 60,
               "the 1m request rate falls under its share of the usual rate once the minute is that empty",
               "1m", recorded=True),
    )),
    Fault("an instance crash-loops, down half the time in outages shorter than ApiTargetDown's `for`", (
        Signal("ApiTargetFlapping", lambda c: (1 - c.thresholds.target_availability_critical) / 0.5 * 600,
               "10m availability falls under its threshold at half the time down (4 changes come sooner)",
               "10m"),
    )),
    Fault("one worker's database pool is exhausted", (
        Signal("DatabaseConnectionPoolExhausted", _const(0), "the pool gauge reads full at the next scrape",
               recorded=True),
    )),
    Fault("database queries turn slow and cache commands fail (two areas degraded)", (
        Signal("DatabaseSlowQueries", lambda c: c.thresholds.db_slow_query_ratio_warning * 300,
               "the 5m slow-query share passes its threshold", "5m", recorded=True),
        Signal("RedisCommandErrors", lambda c: c.thresholds.redis_error_ratio_warning * 300,
               "the 5m Redis error ratio passes its threshold", "5m", recorded=True),
        Signal("ServiceDegradation", _const(0), "two service categories have firing alerts",
               inputs=("DatabaseSlowQueries", "RedisCommandErrors")),
    )),
)


@dataclass(frozen=True)
class Row:
    fault: str
    alert: Alert
    signal: Signal
    expected: float  # seconds from the fault to the page (or to firing, when inhibited)
    worst: float
    group_wait: float
    inputs_for: str  # the `for`s of its ALERTS inputs, for the table


def group_wait(alert: Alert, cfg: MixinConfig) -> float:
    """The group_wait of the route the alert takes (routing.py's tree, read from the config)."""
    r = cfg.routing
    if alert.severity == r.page_severity and alert.name in routing.CAUSES:
        return seconds(r.cause_group_wait)
    timers = {severity: wait for severity, wait, _interval, _repeat in r.timers}
    return seconds(timers.get(alert.severity, "30s"))


def _fire(signal: Signal, alert: Alert, cfg: MixinConfig, iv: Intervals, fired: dict[str, tuple[float, float]],
          ) -> tuple[float, float]:
    """(expected, worst) seconds from the fault to the alert firing in Prometheus."""
    if signal.inputs:
        # ALERTS is written when an input's group evaluates; this group evaluates within one
        # interval after that.
        exp = max(fired[n][0] for n in signal.inputs) + iv.evaluation / 2
        worst = max(fired[n][1] for n in signal.inputs) + iv.evaluation
    else:
        needs = signal.needs(cfg)
        delay = {"scrape": (iv.scrape / 2, iv.scrape), "probe": ((iv.probe + iv.scrape) / 2, iv.probe + iv.scrape),
                 "clock": (0.0, 0.0)}[signal.source]
        exp, worst = needs + delay[0], needs + delay[1]
        if signal.recorded:
            exp, worst = exp + iv.evaluation / 2, worst + iv.evaluation
        # The next evaluation of the alert's group sees the condition: pending from then on.
        exp, worst = exp + iv.evaluation / 2, worst + iv.evaluation
    return exp + seconds(alert.for_), worst + seconds(alert.for_)


def problems(alerts: Sequence[Alert]) -> list[str]:
    """Where FAULTS no longer matches the rules (tests/unit/mixin/test_docs.py fails on any):
    an alert renamed or gone, a window the expression no longer reads, an ALERTS input not
    modelled before the alert that counts it, a P0 no fault raises."""
    by_name = {a.name: a for a in alerts}
    out = []
    for fault in FAULTS:
        seen: set[str] = set()
        for signal in fault.signals:
            alert = by_name.get(signal.alert)
            if alert is None:
                out.append(f"{signal.alert}: no such alert")
                continue
            if signal.window and signal.window not in alert.expr:
                out.append(f"{alert.name}: its expression no longer reads a {signal.window} window")
            if "ALERTS" in alert.expr and not signal.inputs:
                out.append(f"{alert.name}: counts ALERTS, but the fault names no inputs")
            out += [f"{alert.name}: input {n} is not modelled before it" for n in signal.inputs if n not in seen]
            seen.add(alert.name)
    out += [f"{name}: a P0 that no fault raises" for name in unmodelled(alerts)]
    return out


def rows(alerts: Sequence[Alert], cfg: MixinConfig, iv: Intervals = PRODUCTION) -> list[Row]:
    """Every modelled alert that exists (problems() lists the others)."""
    by_name = {a.name: a for a in alerts}
    out = []
    for fault in FAULTS:
        fired: dict[str, tuple[float, float]] = {}
        for signal in fault.signals:
            alert = by_name.get(signal.alert)
            if alert is None or any(n not in fired for n in signal.inputs):
                continue
            exp, worst = _fire(signal, alert, cfg, iv, fired)
            fired[alert.name] = (exp, worst)
            wait = 0.0 if signal.behind else group_wait(alert, cfg)
            inputs_for = ", ".join(f"{n} {by_name[n].for_}" for n in signal.inputs)
            out.append(Row(fault.name, alert, signal, exp + wait, worst + wait, wait, inputs_for))
    return out


def first_pages(table: list[Row], cfg: MixinConfig) -> dict[str, Row]:
    """Each fault's first page: its earliest page-severity alert that no other one inhibits."""
    pages: dict[str, Row] = {}
    for row in table:
        if row.alert.severity != cfg.routing.page_severity or row.signal.behind:
            continue
        if row.fault not in pages or row.expected < pages[row.fault].expected:
            pages[row.fault] = row
    return pages


def unmodelled(alerts: Sequence[Alert]) -> list[str]:
    """P0 alerts no fault here covers (their detection time is not computed)."""
    modelled = {s.alert for f in FAULTS for s in f.signals}
    return sorted(a.name for a in alerts if a.priority == "P0" and a.name not in modelled)


def live_disagreements(alerts: Sequence[Alert], cfg: MixinConfig, live: Path | Traversable = DATA) -> dict[str, str]:
    """The live run checked against the model under the overlay: each alert's measured time lies
    between its `for` (over 30) and the model's worst case with the window the live scenario
    needed (no history there) plus the live suite's slack; an alert that counts ALERTS cannot
    fire before the alerts it counts. alert -> why it disagrees."""
    measured = _live(live)
    by_name = {a.name: a for a in alerts}
    signals = {s.alert: s for f in FAULTS for s in f.signals if not s.behind}
    out = {}
    for name, row in measured.items():
        signal, alert = signals.get(name), by_name.get(name)
        if signal is None or alert is None:
            continue
        run_for = seconds(row["production_for"]) / OVERLAY_FOR_DIVISOR
        if signal.inputs:
            floor = max(measured[n]["measured"] if n in measured else seconds(by_name[n].for_) / OVERLAY_FOR_DIVISOR
                        for n in signal.inputs if n in by_name) + run_for
            if row["measured"] < floor:
                out[name] = (f"fired {row['measured']:.1f} s after the fault, before the alerts it counts "
                             f"({', '.join(signal.inputs)}) could ({floor:.1f} s): other alerts were still "
                             "firing from an earlier scenario")
            continue
        iv = OVERLAY
        delay = {"scrape": iv.scrape, "probe": iv.probe + iv.scrape, "clock": 0.0}[signal.source]
        wait = OVERLAY_GROUP_WAIT if group_wait(alert, cfg) else 0.0
        bound = (row["window"] + delay + (iv.evaluation if signal.recorded else 0) + iv.evaluation + run_for
                 + wait + LIVE_SLACK)
        if not run_for <= row["measured"] <= bound:
            out[name] = f"measured {row['measured']:.1f} s, the model allows {run_for:.1f}-{bound:.1f} s"
    return out


def _live(path: Path | Traversable) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {d["alert"]: d for d in json.loads(path.read_text(encoding="utf-8"))
            if not d["category"].startswith("ha")}


def _dur(value: float) -> str:
    value = round(value)
    return f"{value} s" if value < 120 else f"{value // 60} m {value % 60:02d} s"


def section(alerts: Sequence[Alert], cfg: MixinConfig, live: Path | Traversable = DATA,
            iv: Intervals = PRODUCTION) -> str:
    table = rows(alerts, cfg, iv)
    pages = first_pages(table, cfg)
    measured = _live(live)
    disagree = live_disagreements(alerts, cfg, live)
    mean = sum(r.expected for r in pages.values()) / len(pages)
    slow = [r for r in pages.values() if r.expected > TARGET_SECONDS]
    out = [
        "## Detection time, computed from the rules\n",
        f"From the fault to the page, under production intervals ({iv.scrape:g} s scrape, {iv.evaluation:g} s "
        f"evaluation, {iv.probe:g} s health probe), computed when this page is rendered from each rule's `for`, "
        "the `for` of the alerts it counts through `ALERTS`, what its range windows need against at least 6 h of "
        "healthy history (the longest page window; with less, a burn alert's 6h/30m pair fires sooner), and the "
        "routing's group_wait (`mixin/mystocks_otel_mixin/docs/detection.py`; promtool, evaluating the rules "
        "at 15 s on such history, fires each alert of `tests/integration/mixin/test_detection_promtool.py` "
        "within two evaluations of the windows plus the `for` given here). "
        "Expected: half an interval for every wait on the next scrape, probe or evaluation; worst: a whole one. "
        "A row marked *inhibited* fires in Prometheus but pages nobody: the alert named beside it has paged "
        "for the same cause. *Live* is the live suite's last run of the same fault on the whole stack under "
        "the test overlay (1 s intervals, every `for` divided by 30, no history): it proves the chain "
        "fires and routes, not the production times.\n",
        "| fault | alert | priority | the windows need | `for` | counts (`for`) | group_wait | expected | worst | live |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        first = pages.get(row.fault) is row
        page = f"inhibited by `{row.signal.behind}`" if row.signal.behind else f"{row.group_wait:g} s"
        live = None if row.signal.behind else measured.get(row.alert.name)
        out.append(
            f"| {row.fault} | {'**' if first else ''}`{row.alert.name}`{'**' if first else ''} | {row.alert.priority} "
            f"| {row.signal.needs(cfg):.0f} s: {row.signal.why} | {row.alert.for_} | {row.inputs_for or '-'} "
            f"| {page} | {_dur(row.expected)} | {_dur(row.worst)} "
            f"| {'%.1f s' % live['measured'] if live else '-'}{' (†)' if live and row.alert.name in disagree else ''} |")
    out += [
        "",
        f"**P0 mean time to detect under production intervals: {mean:.0f} s** over {len(pages)} faults, each "
        f"counted at its first page (in bold above); the target is {TARGET_SECONDS:.0f} s.\n",
    ]
    if measured:
        out.append("Every live value lies between the alert's `for` and the model's worst case under the "
                   "overlay (with the window the live scenario needed), except those marked (†):\n")
        out += [f"- (†) `{name}`: {why}." for name, why in sorted(disagree.items())] or ["- none."]
        out.append("")
    if slow:
        out.append("Faults whose first page cannot come within 2 minutes, and why:\n")
        out += [f"- {r.fault}: `{r.alert.name}` after {_dur(r.expected)} — {r.signal.why}"
                + (f"; then its own `for: {r.alert.for_}`" if seconds(r.alert.for_) else "")
                + (f"; it waits for {r.inputs_for} to fire first" if r.inputs_for else "") + "."
                for r in sorted(slow, key=lambda r: -r.expected)]
        out.append("")
    stale = problems(alerts)
    if stale:
        out.append(f"Not computed (`docs/detection.py` is behind the rules): {'; '.join(stale)}.\n")
    out.append("Warnings keep longer `for`s (up to 15m) on purpose: they open tickets, not pages, and must "
               "not flap. Slow-burn SLO alerts (6 h to 3 d windows) page nobody.\n")
    return "\n".join(out) + "\n"
