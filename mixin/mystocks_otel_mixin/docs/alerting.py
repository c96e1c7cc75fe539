"""docs/runbooks.md and docs/ALERTING.md, rendered from the same Alert/Record definitions."""

from __future__ import annotations

from mystocks_otel_mixin import routing, rules
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.docs import detection
from mystocks_otel_mixin.lib.promql import num
from mystocks_otel_mixin.lib.rulekit import Alert, Record, anchor, dedent, header

GENERATED = header("mystocks_otel_mixin.docs.alerting", "<!--")
AM_URL = "http://localhost:9093"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def runbooks(alerts: tuple[Alert, ...], cfg: MixinConfig) -> str:
    out = [GENERATED, "# MyStocks runbooks\n\n",
           "One section per alert; every alert's `runbook_url` points at its heading. Each says "
           "what the alert means, the first three things to check and how to silence it. "
           "Silence with `amtool` against Alertmanager (default "
           f"`{AM_URL}`); always give a comment and the shortest duration that covers the work.\n\n",
           "On an exchange holiday (or a typhoon closure) the rules see a trading day with no "
           "data: they do not know the holiday calendar. Every alert gated on the trading "
           "session carries `gate=\"trading_session\"` — the market-data and business alerts "
           "and the market-data-freshness SLO burns alike — so one silence covers them all. "
           "Set it for the whole closed day, before the open:\n\n```sh\n"
           "amtool silence add gate=trading_session --start=2026-10-01T00:00:00Z "
           f"--end=2026-10-02T00:00:00Z \\\n  --comment=\"exchange holiday\" --alertmanager.url={AM_URL}\n```\n\n"
           "A silence mutes notifications only: the freshness SLI still records the closed day "
           "as stale and spends budget. So render the year's exchange calendar into the rules "
           "(`mystocks-otel render --holiday 2026-10-01 --holiday 2026-10-02 ...`): on those "
           "days `mystocks:trading_session:open` stays absent, and every gated rule and the SLI "
           "are quiet. Keep the silence for closures nobody announced.\n"]
    for category in cfg.labels.categories:
        for alert in (a for a in alerts if a.category == category):
            labels = ", ".join(f"{k}={v}" for k, v in alert.rule(cfg)["labels"].items())
            out.append(f"\n## {alert.name}\n\n")
            out.append(f"**{alert.summary.replace('{{ $labels.', '<').replace(' }}', '>')}** "
                       f"({labels}; fires after `for: {alert.for_}`)\n\n")
            out.append(f"What it means: {alert.threshold}. {' '.join(alert.why.split())}\n\n")
            out.append(f"```promql\n{dedent(alert.expr)}\n```\n\n")
            out.append("First three things to check:\n\n")
            out.extend(f"{i}. {check}\n" for i, check in enumerate(alert.checks, 1))
            out.append(f"\nDefined in `mixin/mystocks_otel_mixin/rules/{category}.py` (thresholds: "
                       f"`MixinConfig.thresholds`, `mystocks-otel render --show-config`); tested in "
                       f"`alerts/tests/{category}.yml`.\n")
            out.append(f"\nDashboard: {cfg.grafana_url}/d/{alert.dashboard}"
                       + (f" (opened on the alert's {', '.join(alert.link_labels)})" if alert.link_labels else "")
                       + "\n\n")
            if alert.name == "Watchdog":
                out.append("Silence: never. Silencing the Watchdog makes the heartbeat receiver "
                           "report the pipeline as broken.\n")
            else:
                out.append("Silence (while you work on it):\n\n```sh\n"
                           f"amtool silence add alertname={alert.name} --duration=2h \\\n"
                           f"  --comment=\"<ticket>: <why>\" --alertmanager.url={AM_URL}\n```\n")
    return "".join(out)


def _alert_tables(alerts: tuple[Alert, ...], cfg: MixinConfig) -> str:
    out = []
    for category in cfg.labels.categories:
        rows = [a for a in alerts if a.category == category]
        if not rows:
            continue
        out.append(f"\n### {category} ({len(rows)})\n\n")
        out.append("| alert | severity | priority | team | threshold | reasoning |\n|---|---|---|---|---|---|\n")
        out.extend(
            f"| [{a.name}](runbooks.md#{anchor(a.name)}) | {a.severity} | {a.priority} | {a.team} "
            f"| {_cell(a.threshold)} | {_cell(a.why)} |\n"
            for a in rows
        )
    return "".join(out)


def alerting(alerts: tuple[Alert, ...], records: tuple[Record, ...], cfg: MixinConfig) -> str:
    by_cat = {c: sum(a.category == c for a in alerts) for c in cfg.labels.categories}
    t = cfg.thresholds
    freshness = cfg.slo("market-data-freshness").threshold_seconds
    slos = "".join(
        f"| `{s.name}` | {num(s.objective * 100)}% | {num(s.error_budget * 100)}% | {s.description} |\n"
        for s in cfg.slos
    )
    burns = "".join(
        f"| {sev} | {long} and {short} | {f:g}x | the 30-day budget would be gone in {30 / f:g} days |\n"
        for sev, long, short, f in cfg.burn_rates
    )
    recs = "".join(f"| `{r.record}`{' ' + str(r.labels) if r.labels else ''} | {_cell(r.why)} |\n"
                   for r in records if not r.record.startswith("slo:"))
    return GENERATED + f"""# Alerting

The rules live in `alerts/rules/` and are generated by `mystocks_otel_mixin.rules` from one
Python definition per rule. As in kubernetes-mixin, each category has one module,
`mixin/mystocks_otel_mixin/rules/<category>.py`, holding its recording rules and its alerts, and
one promtool file, `alerts/tests/<category>.yml`, holding its scenarios. `mixin/lib/` has the
rule kit and the PromQL builder (which rejects a metric name the catalog does not know);
every threshold, the trading sessions and the label vocabularies are fields of one
`MixinConfig` (`mixin/mystocks_otel_mixin/config.py`), which the dashboards and the
Alertmanager routing read too. Never edit the YAML: change the definition and run
`mystocks-otel render`. This page and `docs/runbooks.md` are written by
`mystocks_otel_mixin.docs.alerting` from the same definitions.

| file | contents |
|---|---|
| `alerts/rules/mystocks-recording.yml` | recording rules for dashboards, alerts and the 1-year aggregates |
| `alerts/rules/mystocks-alerts.yml` | {sum(by_cat[c] for c in cfg.labels.categories if c != 'slo')} alerts, one group per category |
| `alerts/rules/mystocks-slo.yml` | SLI error ratios and {by_cat['slo']} burn-rate alerts |
| `alerts/tests/*.yml` | `promtool test rules` unit tests: a firing and a silent case for every alert |
| `docs/runbooks.md` | one section per alert: meaning, first checks, how to silence |

Every alert has `for`, the labels `severity` (critical, warning, info), `category`, `priority`
(P0-P3) and `team` (platform, data, performance: Alertmanager routes on them), and the
annotations `summary`, `description`, `runbook_url` and `dashboard_url`. The reasoning for each
threshold is a comment above the rule and the last column below. Ratios divide by `(x > 0)`
so that no traffic yields no series rather than NaN, and count "no errors yet" as 0 with
`or denominator * 0`.

## Paging policy

A page (PagerDuty) wakes someone at 3 a.m., so each one must mean "act now", once.

- **One page per cause.** Every alert carries `service`, the broken thing (`mystocks-api`,
  `postgresql`, `redis`, `market-data`, `monitoring`). The PagerDuty routes group by
  `job, service`, so one cause is one incident even when several rules see it (a 6% 5xx
  burst fires `ApiCriticalErrorRate` and `ApiAvailabilityErrorBudgetBurnFast`: one incident).
  Inhibition silences the consequences of a known cause: `PostgreSQLDown`/`RedisDown` silence
  the symptoms and the same service's health warnings (which would page a second PagerDuty
  service); `ServiceDegradation` does not count a known cause's symptoms; one instance's
  `ApiTargetDown` silences only that instance's alerts, and only `ApiJobDown` (every instance
  down) silences the job-level ones. Whichever arrives first: causes page at once, every other
  critical waits {_wait(cfg)} (one evaluation interval plus delivery), so a symptom evaluated in
  an earlier rule group is still waiting when its cause arrives and is muted; a market-data feed
  outage is `MarketDataNotUpdated`'s one incident, its health alerts and `ServiceDegradation`
  inhibited. Tested live against Alertmanager
  (`tests/integration/mixin/test_alertmanager.py::test_live_*`,
  `tests/integration/mixin/test_one_page_per_cause.py`).
- **Per instance where the resource is per instance.** A pool, a process's CPU or WebSocket
  capacity belongs to one instance: `job_instance_pool:mystocks_db_connections:usage_ratio`,
  not a job-wide sum in which api-1's 15/15 hides behind api-2's 0/15. A resource all
  instances share (one Redis) alerts once: its series take the max over instances.
- **Traffic floors.** Ratio, quantile and burn-rate alerts need a minimum of traffic:
  {num(t.min_request_rate)} events/s ({num(t.min_request_rate * 300)} in 5 minutes) of requests, queries, cache lookups,
  Redis commands, orders (latency) and market-data batches; {num(t.min_rare_event_rate)}/s for the rarer order
  rejections and WebSocket connections. At one request a minute a single slow request is the
  p95 and a single 503 burns 1.6% of an hour: neither is an incident. The burn-rate floor
  applies to each short window.
- **Quiet hours.** Market-data, business and freshness rules are gated on
  `mystocks:trading_session:open`, rendered from `MixinConfig.sessions`
  ({cfg.sessions.text()},
  Monday-Friday: 09:30-11:30 and 13:00-15:00 China time). Nights, weekends and the lunch
  break are closed: no data flowing then is not an incident, while a stall inside a session
  still pages.
- **Holidays.** `mystocks-otel render --holiday YYYY-MM-DD` (repeatable) keeps the session
  series closed on the exchange's holidays, so gated alerts and the freshness SLI are quiet and
  spend no budget. For a closure not rendered in, gated alerts carry `gate="trading_session"`:
  one silence on that label covers them all, SLO burns included (`docs/runbooks.md`, top).
- **Restarts.** A series that only exists once something happened (sessions, the market-data
  timestamp) is treated as 0 or as absent for a scraped instance, so a restart that never
  recovers still alerts; and nothing pages merely because an idle restarted API has no HTTP
  series yet (health checks and `/metrics` are not counted).
- **Monitoring of the monitoring.** Alertmanager failing per integration, Prometheus rule
  evaluation failures, dropped notifications or no reachable Alertmanager, Collector export
  failures and refused points, the app's OTLP push failing, and the monitoring jobs' scrapes
  (`{cfg.prometheus_job}`, `{cfg.alertmanager_job}`, `{cfg.collector_job}`) down or gone. The
  `Watchdog` stays the outermost check: it always fires with `severity="info"`,
  `category="meta"` and `heartbeat="true"`, and Alertmanager sends it to a heartbeat (dead
  man's switch) receiver, which raises the alarm when it stops arriving.

## Render-time settings

`mystocks-otel render` takes a deployment's values as options (defaults in
`mixin/mystocks_otel_mixin/config.py`'s `MixinConfig`): `--grafana-url` (the alerts' dashboard links),
`--runbook-url`, `--app-job`, `--collector-job`, `--prometheus-job`, `--alertmanager-job`,
`--slo NAME=OBJECTIVE` and `--holiday YYYY-MM-DD` (both repeatable), e.g.
`mystocks-otel render --root deploy/ --grafana-url https://grafana.example.com --slo api-availability=0.995`.
Any other field, thresholds included, is set with `--set KEY=VALUE` (repeatable) or
`--config FILE.yaml` (the same keys, nested); `--show-config` lists every key and its value:
`mystocks-otel render --set thresholds.db_slow_query_ratio_warning=0.1` changes the
expression, the alert's summary and description, its runbook and the panel's threshold line
together.

## Alerts ({len(alerts)})
{_alert_tables(alerts, cfg)}
## SLOs and burn rates

30-day SLOs, from `MixinConfig.slos`:

| SLO | objective | error budget | SLI |
|---|---|---|---|
{slos}
For the request-based SLOs the good and bad event rates are recorded too
(`slo:sli_events:rate5m`, `slo:sli_bad_events:rate5m`): the 30-day budget is
`sum_over_time(slo:sli_bad_events:rate5m[30d]) / sum_over_time(slo:sli_events:rate5m[30d])`,
weighted by requests (a busy hour counts more than a quiet one), not a time average of 5-minute
ratios. The freshness SLO stays time-based: its events are evaluations while the market is open.

The error ratio of each is recorded as `slo:sli_error:ratio_rate<window>{{slo="<name>"}}` for
every window in {', '.join(cfg.slo_windows)} (plus `slo:objective:ratio` and
`slo:error_budget:ratio` for the SLO dashboard). The freshness SLI records a 0/1 "every
real-time feed ({', '.join(cfg.sessions.realtime_datasets)}) is fresher than {num(freshness)} s" series each
evaluation while the market is open, and its error ratio is 1 minus its mean over the window.

Alerts are multiwindow, multi-burn-rate (Google SRE workbook, ch. 5). Both windows must exceed
the burn-rate factor x the error budget: the long window proves the burn is significant, the
short one that it is still going on.

| severity | windows | factor | meaning |
|---|---|---|---|
{burns}
Per SLO there is a `...ErrorBudgetBurnFast` alert (critical, the two page conditions) and a
`...ErrorBudgetBurnSlow` alert (warning, the two ticket conditions).

## Recording rules

Named `level:metric:operations`. The `slo:*` series are described above.

| record | purpose |
|---|---|
{recs}
## Retention: 15 days raw, 1 year aggregated

Prometheus keeps raw samples for 15 days (`--storage.tsdb.retention.time=15d`; the SLO
windows need at most 3 days). The year is kept by the recording rules' aggregates only: the
`job:*`, `job_*:*`, `slo:*` and `severity:*` series, a few hundred series instead of every
label combination.

- **Long-term store (recommended):** `remote_write` from Prometheus to a store with 1-year
  retention (Thanos Receive, Mimir, VictoriaMetrics `-retentionPeriod=1y`), sending only the
  aggregates:

  ```yaml
  remote_write:
    - url: http://victoriametrics:8428/api/v1/write
      write_relabel_configs:
        - source_labels: [__name__]
          regex: "(job|job_[a-z_]+|slo|severity):.+"
          action: keep
  ```

- **Or federation:** a second Prometheus with `--storage.tsdb.retention.time=1y` scrapes
  `/federate?match[]={{__name__=~"(job|job_[a-z_]+|slo|severity):.+"}}` from the first every
  minute (`honor_labels: true`).

Long-range dashboards query the aggregates (`job:http_server_requests:rate5m`, not
`rate(http_server_request_duration_seconds_count[5m])`), so they keep working past 15 days.

## How to add an alert

1. If the metric is new, add it to `mystocks_otel/catalog.py` first: rules may reference only
   catalog metrics, recorded series and `up`/`ALERTS`/`scrape_*`/`otelcol_*`.
2. Add an `Alert(...)` (keyword arguments) to its category's `mixin/rules/<category>.py`,
   building selectors with the module's `PromQL` builder: expression, `for`, severity, category, priority, team, summary,
   description (`{{{{ $value | humanize... }}}}`), the threshold line, the reasoning (`why`) and
   the three first checks for the runbook. Aggregate before `histogram_quantile` (`sum by
   (..., le)`), and guard divisions with `(x > 0)`. Put its threshold in
   `MixinConfig.thresholds` (`mixin/mystocks_otel_mixin/config.py`) and write the summary,
   description and threshold line from it (`num`, `pct`, `dur`), never the number by hand.
3. Run `mystocks-otel render`: the rule files, `docs/runbooks.md` and this page are rewritten.
4. Add a firing and a silent case to the category's `alerts/tests/<category>.yml`.
   `tests/unit/mixin/test_rules.py` fails until both exist; run
   `promtool test rules alerts/tests/*.yml` and `pytest tests/unit/mixin/test_rules.py`.

## Routing and inhibition

Alertmanager routes on `severity`, `team` and `category`. Its config template,
`alerts/alertmanager/alertmanager.yml.tmpl`, is generated by `mystocks_otel_mixin.routing` from
the same `MixinConfig` (`labels`, `routing`); the full table, as `amtool config routes test`
checks it, is in `alerts/alertmanager/README.md`:

- every alert reaches the catch-all JSON webhook (and the app's `POST /alerts/webhook`);
{_routing_lines(cfg)}
- the `Watchdog` goes only to its heartbeat receiver.

Inhibition: a critical alert suppresses its warning twin for the same service, and a down
component (target down, PostgreSQL or Redis down) suppresses the alerts that depend on it.
The Watchdog is never inhibited.
"""


def _wait(cfg: MixinConfig) -> str:
    return {severity: wait for severity, wait, _i, _r in cfg.routing.timers}.get(cfg.routing.page_severity, "30s")


def _routing_lines(cfg: MixinConfig) -> str:
    r = cfg.routing
    timers = {severity: (wait, repeat) for severity, wait, _interval, repeat in r.timers}
    channels = dict(r.severity_channels)
    lines = []
    for severity in cfg.labels.severities:
        wait, repeat = timers.get(severity, ("30s", "4h"))
        if severity not in channels:
            lines.append(f"- `{severity}` reaches only the webhook;")
            continue
        extra, page = "", ""
        teams = dict(r.msteams_channels).get(severity)
        if teams:
            extra = f"; Microsoft Teams ({teams}) too"
        if severity == r.page_severity:
            page = ", PagerDuty on-call"
            extra += (f"; alerts that name a cause ({', '.join(f'`{c}`' for c in routing.CAUSES)}) "
                      f"page at once (group wait {r.cause_group_wait}), and the others wait {wait} so that a "
                      "cause fired in the same evaluation arrives first and inhibits them")
        elif r.service_page_categories:
            categories = ", ".join('`category="' + c + '"`' for c in r.service_page_categories)
            extra += f"; {categories} {severity}s also page the PagerDuty service key"
        lines.append(f"- `{severity}`: Slack #mystocks-{channels[severity]}{page} and the team lead's e-mail, "
                     f"group wait {wait}, repeated every {repeat}{extra};")
    if r.team_channels:
        teams = " and ".join(f'`team="{t}"`' for t, _ in r.team_channels)
        chans = " and ".join(f"#mystocks-{c}" for _, c in r.team_channels)
        lines.append(f"- {teams} also reach {chans} (`continue: true`);")
    return "\n".join(lines)


def generate(cfg: MixinConfig) -> dict[str, str]:
    alerts, records = rules.all_alerts(cfg), rules.all_records(cfg)
    return {"docs/runbooks.md": runbooks(alerts, cfg),
            "docs/ALERTING.md": alerting(alerts, records, cfg) + detection.section(alerts, cfg)}
