"""The SLOs as OpenSLO v1 documents (slo/openslo.yaml), from the same config as the rules.

Tools that read OpenSLO (Nobl9, the OpenSLO converters, Sloth's OpenSLO import) see the three
SLOs the Prometheus rules alert on: the same objectives, thresholds, queries and 30-day rolling
window. Request-based SLOs are ``Occurrences`` ratios of the HTTP counters; market-data
freshness is ``Timeslices``: each evaluation (15 s) is good while every real-time feed is
fresher than the threshold, counted only while the market is open (as the rules count it).
The alerting itself stays in Prometheus (alerts/rules/mystocks-slo.yml); OpenSLO's alert
kinds are not exported. Validated against the OpenSLO v1 JSON schema by
tests/unit/mixin/test_openslo_export.py.
"""

from __future__ import annotations

import yaml

from mystocks_otel_mixin import config
from mystocks_otel_mixin.config import MixinConfig
from mystocks_otel_mixin.lib.promql import PromQL, le_matcher
from mystocks_otel_mixin.lib.rulekit import header
from mystocks_otel_mixin.rules import slo as slo_rules

OPENSLO_FILE = "slo/openslo.yaml"
API_VERSION = "openslo/v1"
#: The evaluation interval each freshness check stands for (prometheus/prometheus.yml).
TIMESLICE_SECONDS = 15
HTTP = slo_rules.HTTP


def _source(query: str) -> dict:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _service(cfg: MixinConfig, slo: config.SLO) -> str:
    return cfg.labels.service_of("market_data") if slo.name == "market-data-freshness" else cfg.app_job


def _indicator(cfg: MixinConfig, slo: config.SLO) -> dict:
    q = PromQL(cfg.app_job)
    total = f"sum({q.sel(f'{HTTP}_count')})"
    errors = 'http_response_status_code=~"5.."'
    if slo.name == "api-availability":
        spec = {"ratioMetric": {"counter": True,
                                "bad": _source(f"sum({q.sel(f'{HTTP}_count', errors)})"),
                                "total": _source(total)}}
    elif slo.name == "api-latency":
        spec = {"ratioMetric": {"counter": True,
                                "good": _source(f"sum({q.sel(f'{HTTP}_bucket', le_matcher(slo.threshold_seconds))})"),
                                "total": _source(total)}}
    elif slo.name == "market-data-freshness":
        datasets = "|".join(cfg.sessions.realtime_datasets)
        gauge = q.sel("mystocks_data_quality_freshness_seconds", f'dataset=~"{datasets}"')
        spec = {"thresholdMetric": _source(f"max({gauge}) and on () {slo_rules.SESSION}")}
    else:
        raise ValueError(f"no SLI defined for SLO {slo.name!r}")
    return {"metadata": {"name": f"{slo.name}-sli", "displayName": f"{slo.name} SLI"}, "spec": spec}


def _objective(slo: config.SLO) -> dict:
    objective = {"displayName": slo.description, "target": slo.objective}
    if slo.name == "market-data-freshness":
        objective.update({"op": "lt", "value": slo.threshold_seconds,
                          "timeSliceTarget": 1, "timeSliceWindow": TIMESLICE_SECONDS})
    return objective


def slo_document(cfg: MixinConfig, slo: config.SLO) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "SLO",
        "metadata": {"name": slo.name, "displayName": slo.description,
                     "labels": {"team": slo_rules.TEAM[slo.name], "slo": slo.name}},
        "spec": {
            "description": slo.description,
            "service": _service(cfg, slo),
            "indicator": _indicator(cfg, slo),
            "timeWindow": [{"duration": slo_rules.PERIOD, "isRolling": True}],
            "budgetingMethod": "Timeslices" if slo.name == "market-data-freshness" else "Occurrences",
            "objectives": [_objective(slo)],
        },
    }


def documents(cfg: MixinConfig) -> list[dict]:
    """A Service per service the SLOs name, then one SLO (with its SLI inline) per cfg.slos."""
    services = dict.fromkeys(_service(cfg, s) for s in cfg.slos)
    docs = [{"apiVersion": API_VERSION, "kind": "Service", "metadata": {"name": name},
             "spec": {"description": f"MyStocks {name}."}} for name in services]
    return docs + [slo_document(cfg, slo) for slo in cfg.slos]


def generate(cfg: MixinConfig) -> dict[str, str]:
    body = yaml.safe_dump_all(documents(cfg), sort_keys=False, width=1000, explicit_start=True)
    return {OPENSLO_FILE: header(__name__) + "# The SLOs of alerts/rules/mystocks-slo.yml as OpenSLO v1 (https://openslo.com).\n" + body}
