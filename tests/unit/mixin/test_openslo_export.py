"""The OpenSLO export (slo/openslo.yaml): valid OpenSLO v1 (the spec's own JSON schema,
vendored in openslo_v1/), and the same SLOs, objectives, thresholds and window as the rules."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import referencing
import yaml

from mystocks_otel_mixin import config, openslo
from mystocks_otel_mixin.rules import slo as slo_rules

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = Path(__file__).resolve().parent / "openslo_v1"


def _validator() -> jsonschema.Draft7Validator:
    resources = []
    for path in sorted(SCHEMAS.rglob("*.schema.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], referencing.Resource.from_contents(
            schema, default_specification=referencing.jsonschema.DRAFT7)))
    registry = referencing.Registry().with_resources(resources)
    root = json.loads((SCHEMAS / "openslo.schema.json").read_text())
    return jsonschema.Draft7Validator(root, registry=registry)


VALIDATOR = _validator()


def _errors(document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]


def _committed() -> list[dict]:
    return list(yaml.safe_load_all((ROOT / openslo.OPENSLO_FILE).read_text()))


def test_the_committed_export_is_valid_openslo_v1():
    documents = _committed()
    assert [d["kind"] for d in documents].count("SLO") == len(config.SLOS)
    for document in documents:
        assert not _errors(document), (document["metadata"]["name"], _errors(document))


@pytest.mark.parametrize("break_it, where", [
    (lambda d: d["spec"].pop("budgetingMethod"), "budgetingMethod"),
    (lambda d: d["spec"]["objectives"][0].update(target=1.5), "target"),
    (lambda d: d["spec"]["timeWindow"][0].update(duration="30 days"), "duration"),
    (lambda d: d["spec"]["indicator"]["spec"]["ratioMetric"].update(
        good=d["spec"]["indicator"]["spec"]["ratioMetric"]["bad"]), "ratioMetric"),
    (lambda d: d.update(apiVersion="openslo/v2"), "apiVersion"),
])
def test_the_schema_rejects_a_broken_slo(break_it, where):
    """The validation can fail: each of these breaks the availability SLO."""
    document = openslo.slo_document(config.DEFAULT, config.DEFAULT.slo("api-availability"))
    assert not _errors(document)
    break_it(document)
    assert _errors(document), where


def test_the_export_follows_the_config():
    """Objectives, thresholds and the job come from MixinConfig, as the rules' do."""
    cfg = config.DEFAULT.with_slo_objectives({"api-availability": 0.995}).with_overrides({"app_job": "api-prod"})
    documents = {d["metadata"]["name"]: d for d in openslo.documents(cfg) if d["kind"] == "SLO"}
    assert set(documents) == {s.name for s in cfg.slos}
    for slo in cfg.slos:
        spec = documents[slo.name]["spec"]
        assert spec["objectives"][0]["target"] == slo.objective
        assert spec["timeWindow"] == [{"duration": slo_rules.PERIOD, "isRolling": True}]
        queries = json.dumps(spec["indicator"])
        assert 'job=\\"api-prod\\"' in queries and "mystocks-api\\\"" not in queries
        assert not _errors(documents[slo.name])
    assert documents["api-availability"]["spec"]["objectives"][0]["target"] == 0.995
    freshness = documents["market-data-freshness"]["spec"]
    assert freshness["budgetingMethod"] == "Timeslices"
    assert freshness["objectives"][0]["value"] == cfg.slo("market-data-freshness").threshold_seconds
    assert "mystocks:trading_session:open" in freshness["indicator"]["spec"]["thresholdMetric"]["metricSource"]["spec"]["query"]


def test_render_writes_the_export(tmp_path):
    from mystocks_otel.cli import main

    assert main(["render", "--root", str(tmp_path), "--slo", "api-latency=0.95"]) == 0
    documents = list(yaml.safe_load_all((tmp_path / openslo.OPENSLO_FILE).read_text()))
    latency = next(d for d in documents if d["metadata"]["name"] == "api-latency")
    assert latency["spec"]["objectives"][0]["target"] == 0.95
    assert all(not _errors(d) for d in documents)
