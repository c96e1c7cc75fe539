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

from mystocks_otel.mixin import config
from mystocks_otel.mixin.dashboards import provisioning
from mystocks_otel.mixin.dashboards.common import (
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

#: The SLO period. Recording rules stop at 3d, so the 30-day ratio is the mean of the 5m
#: ratio over 30 days (Sloth's approach; it weighs every 5 minutes equally, not every request).
PERIOD = "30d"
BASE_WINDOW = "5m"
OBJECTIVE_RECORD = "slo:objective:ratio"


def _ratio(slo: config.SLO, window: str) -> str:
    # The SLO records keep the job label (mixin.alerts_slo), so the job variable applies.
    return f'{config.slo_error_ratio_record(window)}{{slo="{slo.name}", job=~"$job"}}'


def _period_error_ratio(slo: config.SLO) -> str:
    return f"avg_over_time({_ratio(slo, BASE_WINDOW)}[{PERIOD}])"


def _panels(slo: config.SLO) -> list:
    budget = f"{slo.error_budget:.6g}"
    objective = f"{slo.objective:.6g}"
    # The burn rates the multiwindow alerts page/ticket on, drawn as threshold lines.
    factors = sorted({factor for _sev, _long, _short, factor in config.BURN_RATE_ALERTS})
    burn_steps = ((None, "green"), *((f, "yellow" if f < 10 else "red") for f in factors))
    return [
        stat_panel(
            f"{slo.name}: error budget remaining ({PERIOD})",
            f"Share of the {PERIOD} error budget ({budget} of events) not yet spent. "
            "Below zero the SLO is breached. From the long-term store, which keeps the SLI "
            "recordings a year (Prometheus keeps 15 days).",
            "percentunit",
            [query(f"1 - {_period_error_ratio(slo)} / {budget}", "remaining", instant=True,
                   datasource=LTS_DATASOURCE)],
            width=6, steps=((None, "red"), (0, "yellow"), (0.25, "green"))),
        stat_panel(
            f"{slo.name}: SLI ({PERIOD})",
            f"{slo.description} Objective: {objective}. From the long-term store.",
            "percentunit",
            [query(f"1 - {_period_error_ratio(slo)}", "SLI", instant=True, datasource=LTS_DATASOURCE)],
            width=6, steps=((None, "red"), (slo.objective, "green"))),
        timeseries_panel(
            f"{slo.name}: SLI",
            f"{slo.description} Over 5-minute and 1-hour windows, against the objective ({objective}).",
            "percentunit",
            [*(query(f"1 - {_ratio(slo, w)}", f"SLI {w} {{{{job}}}}") for w in (BASE_WINDOW, "1h")),
             # Recorded from the same config by mixin.alerts_slo: the line the SLI must stay above.
             query(f'{OBJECTIVE_RECORD}{{slo="{slo.name}"}}', "objective")],
            width=12, steps=((None, "red"), (slo.objective, "green"))),
        timeseries_panel(
            f"{slo.name}: burn rate",
            "How fast the error budget is being spent (1 = exactly used up at the end of the "
            f"{PERIOD} period), per alerting window. Lines mark the burn rates the alerts use: "
            + ", ".join(f"{sev} {long_w}/{short_w} at {f}x" for sev, long_w, short_w, f in config.BURN_RATE_ALERTS)
            + ".",
            "suffix:x",
            [query(f"{_ratio(slo, w)} / {budget}", f"{w} {{{{job}}}}") for w in config.SLO_WINDOWS],
            width=24, min_val=0, steps=burn_steps),
    ]


def build(cfg: config.MixinConfig):
    board = base_dashboard(
        "MyStocks SLOs", config.SLO_DASHBOARD_UID,
        f"Error budgets, burn rates and SLIs of the MyStocks {PERIOD} service-level objectives.",
        ["slo"], time_from="now-24h")  # a day shows the slower burn-rate windows move
    lts = lts_datasource_variable(provisioning.LTS_NAME, provisioning.LTS_UID)
    for variable in (datasource_variable(), lts, job_variable(cfg.app_job)):
        board = board.with_variable(variable)
    board = board.link(dashboard.DashboardLink("Overview").type(DashboardLinkType.DASHBOARDS).tags(["overview"])
                       .keep_time(True))
    for slo in cfg.slos:
        board = board.with_row(dashboard.Row(f"SLO: {slo.name} ({slo.objective:.6g})").collapsed(False))
        for panel in _panels(slo):
            board = board.with_panel(panel)
    return number_panels(board.build())
