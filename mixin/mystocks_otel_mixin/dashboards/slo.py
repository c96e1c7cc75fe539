"""The SLO dashboard: one row per objective in ``cfg.slos`` (error budget, burn rates, SLI).

Reads only the ``slo:sli_error:ratio_rate<window>`` recording rules (``mixin.rules``), so
the dashboard, the burn-rate alerts and the SLO definitions cannot drift apart. The 30-day
panels read the long-term store (``$lts_datasource``): Prometheus keeps 15 days of samples,
VictoriaMetrics a year of the recording-rule series (docs/LONG_TERM_STORE.md).
Built by ``dashboards.generate(cfg)`` (needs the SDK).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from mystocks_otel_mixin import config
from mystocks_otel_mixin.dashboards import provisioning
from mystocks_otel_mixin.dashboards.common import (
    LTS_DATASOURCE,
    base_dashboard,
    datasource_variable,
    job_variable,
    lts_datasource_variable,
    number_panels,
    query,
    stat_panel,
    timeseries_panel,
)
from mystocks_otel_mixin.lib.promql import PromQL, num
from mystocks_otel_mixin.lib.rulekit import Record
from mystocks_otel_mixin.rules import slo as slo_rules

#: The SLO period, read from the long-term store (Prometheus keeps 15 days).
PERIOD = "30d"
BASE_WINDOW = "5m"
OBJECTIVE_RECORD = "slo:objective:ratio"
#: Recorded for request-based SLOs (mixin.rules.slo): events and bad events per second.
EVENTS_RECORD, BAD_EVENTS_RECORD = "slo:sli_events:rate5m", "slo:sli_bad_events:rate5m"


#: The SLO records keep the job label (rules/slo.py), so the job variable applies.
Q = PromQL.grafana("job")


def _sel(record: str, slo: config.SLO) -> str:
    return Q.sel(record, f'slo="{slo.name}"')


def _ratio(slo: config.SLO, window: str) -> str:
    return _sel(config.slo_error_ratio_record(window), slo)


def request_weighted(cfg: config.MixinConfig) -> frozenset[str]:
    """The SLOs whose event rates the rules record: their period ratio weighs every request."""
    recorded = {(rule.record, rule.labels.get("slo")) for rule in slo_rules.records(cfg).rules
                if isinstance(rule, Record)}
    return frozenset(slo.name for slo in cfg.slos
                     if {(EVENTS_RECORD, slo.name), (BAD_EVENTS_RECORD, slo.name)} <= recorded)


def _period_error_ratio(slo: config.SLO, weighted: bool) -> str:
    """The error ratio over the whole period. Request-based SLOs: bad events / events over 30
    days, so a busy hour weighs more than a quiet night. Time-based ones (freshness): the mean
    of the 5-minute ratio, every 5 minutes weighing the same."""
    if weighted:
        return (f"sum_over_time({_sel(BAD_EVENTS_RECORD, slo)}[{PERIOD}])"
                f" / (sum_over_time({_sel(EVENTS_RECORD, slo)}[{PERIOD}]) > 0)")
    return f"avg_over_time({_ratio(slo, BASE_WINDOW)}[{PERIOD}])"


def _panels(cfg: config.MixinConfig, slo: config.SLO, weighted: bool) -> list:
    budget = num(slo.error_budget)
    objective = num(slo.objective)
    period_ratio = _period_error_ratio(slo, weighted)
    weighing = "every request weighs the same" if weighted else "every 5 minutes weigh the same"
    # The burn rates the multiwindow alerts page/ticket on, drawn as threshold lines.
    factors = sorted({factor for _sev, _long, _short, factor in cfg.burn_rates})
    burn_steps = ((None, "green"), *((f, "yellow" if f < 10 else "red") for f in factors))
    return [
        stat_panel(
            f"{slo.name}: error budget remaining ({PERIOD})",
            f"Share of the {PERIOD} error budget ({budget} of events) not yet spent "
            f"({weighing}). Below zero the SLO is breached, and {slo_rules.exhausted_alert_name(slo)} "
            "fires (it reads the same ratio, recorded as slo:period_error_budget_remaining:ratio, "
            "over what Prometheus holds). From the long-term store, which keeps the SLI recordings "
            "a year (Prometheus keeps 15 days).",
            "percentunit",
            [query(f"1 - ({period_ratio}) / {budget}", "remaining", instant=True,
                   datasource=LTS_DATASOURCE)],
            width=6, steps=((None, "red"), (0, "yellow"), (0.25, "green"))),
        stat_panel(
            f"{slo.name}: SLI ({PERIOD})",
            f"{slo.description} Objective: {objective}; {weighing}. From the long-term store.",
            "percentunit",
            [query(f"1 - ({period_ratio})", "SLI", instant=True, datasource=LTS_DATASOURCE)],
            width=6, steps=((None, "red"), (slo.objective, "green"))),
        timeseries_panel(
            f"{slo.name}: SLI",
            f"{slo.description} Over 5-minute and 1-hour windows, against the objective ({objective}).",
            "percentunit",
            [*(query(f"1 - {_ratio(slo, w)}", f"SLI {w} {{{{job}}}}") for w in (BASE_WINDOW, "1h")),
             # Recorded from the same config by mixin.alerts_slo: the line the SLI must stay above.
             query(PromQL().sel(OBJECTIVE_RECORD, f'slo="{slo.name}"'), "objective")],
            width=12, steps=((None, "red"), (slo.objective, "green"))),
        timeseries_panel(
            f"{slo.name}: burn rate",
            "How fast the error budget is being spent (1 = exactly used up at the end of the "
            f"{PERIOD} period), per alerting window. Lines mark the burn rates the alerts use: "
            + ", ".join(f"{sev} {long_w}/{short_w} at {f}x" for sev, long_w, short_w, f in cfg.burn_rates)
            + ".",
            "suffix:x",
            [query(f"{_ratio(slo, w)} / {budget}", f"{w} {{{{job}}}}") for w in cfg.slo_windows],
            width=12, min_val=0, steps=burn_steps),
        timeseries_panel(
            f"{slo.name}: error budget remaining, {PERIOD} rolling",
            f"The {PERIOD} error budget left at each point in time ({weighing}): how the budget "
            "was spent and recovered over the months the long-term store keeps.",
            "percentunit",
            [query(f"1 - ({period_ratio}) / {budget}", "remaining {{job}}", datasource=LTS_DATASOURCE)],
            width=12, steps=((None, "red"), (0, "yellow"), (0.25, "green"))),
    ]


def build(cfg: config.MixinConfig):
    board = base_dashboard(
        "MyStocks SLOs", config.SLO_DASHBOARD_UID,
        f"Error budgets, burn rates and SLIs of the MyStocks {PERIOD} service-level objectives.",
        ["slo"], generator=__name__, time_from="now-24h")  # a day shows the slower burn-rate windows move
    lts = lts_datasource_variable(provisioning.LTS_NAME, provisioning.LTS_UID)
    for variable in (datasource_variable(), lts, job_variable(cfg.app_job)):
        board = board.with_variable(variable)
    board = board.link(dashboard.DashboardLink("Overview").type(DashboardLinkType.DASHBOARDS).tags(["overview"])
                       .keep_time(True))
    weighted = request_weighted(cfg)
    for slo in cfg.slos:
        board = board.with_row(dashboard.Row(f"SLO: {slo.name} ({num(slo.objective)})").collapsed(False))
        for panel in _panels(cfg, slo, slo.name in weighted):
            board = board.with_panel(panel)
    return number_panels(board.build())
