"""Generated files are current: `mystocks-otel render` would change nothing."""

from mystocks_otel_mixin import render
from mystocks_otel_mixin.docs import metrics


def test_committed_generated_files_are_current(pytestconfig):
    stale = render.stale_files(pytestconfig.rootpath)
    assert not stale, f"stale generated files (run `mystocks-otel render`): {stale}"


def test_metrics_doc_lists_every_catalog_metric():
    from mystocks_otel import catalog

    text = metrics.metrics_markdown()
    for spec in catalog.METRICS:
        assert f"`{spec.prometheus_name}`" in text


def test_readme_test_command_is_what_ci_runs(pytestconfig):
    root = pytestconfig.rootpath
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    assert "| run every test | `bash scripts/test.sh` |" in readme
    assert "\nbash scripts/test.sh\n" in ci
