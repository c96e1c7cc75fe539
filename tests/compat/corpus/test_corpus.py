"""The compatibility corpus: real-world app patterns, each run bare, with the one line,
and under ``opentelemetry-instrument``, against a real uvicorn.

Every app (``apps/*.py``) brings its own assertions (``check``). Instrumenting must change
nothing the app's clients can see: same statuses, bodies, headers and OpenAPI schema in all
three modes. The one intended difference is that our endpoints exist only when
instrumented. In the instrumented modes each request the check made must be counted
exactly once, under its full route template and never under a raw path.

Each (app, mode) starts one uvicorn, once, shared by the tests below (see ``runs``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from corpus import (ACTIVE, DURATION, INSTRUMENTED, MODES, app_names, expected_routes, host_paths,
                    load_app, observed_counts, ours_routes, resolve, run_app, samples)

pytestmark = pytest.mark.live

APPS = app_names()
PARALLEL_RUNS = 3


def needed_runs(items) -> list[tuple[str, str]]:
    """The (app, mode) pairs the selected tests of this module read, in test order."""
    pairs = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is sys.modules[__name__] and params.get("name") in APPS:
            modes = [params["mode"]] if "mode" in params else MODES
            pairs += [(params["name"], m) for m in modes if (params["name"], m) not in pairs]
    return pairs


@pytest.fixture(scope="session")
def runs(request, tmp_path_factory):
    """``runs(app, mode)``: the result of starting the app once in that mode.

    All the runs the selected tests need start up front, three at a time (each is mostly
    waiting on its own process), and every test reads them from here.
    """
    pairs = needed_runs(request.session.items)
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {pair: pool.submit(run_app, *pair, tmp_path_factory.mktemp("-".join(pair)))
                   for pair in pairs}

        def get(name: str, mode: str):
            if (name, mode) not in futures:
                futures[name, mode] = pool.submit(run_app, name, mode,
                                                  tmp_path_factory.mktemp(f"{name}-{mode}"))
            return futures[name, mode].result()

        yield get


def started(run) -> None:
    if run.start_error is not None:
        pytest.fail(f"{run.app} did not start in mode {run.mode}: {run.start_error}", pytrace=False)


def tail(run, chars: int = 3000) -> str:
    return f"\n--- server output ({run.mode}) ---\n{run.log[-chars:]}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", APPS)
def test_app_passes_its_own_checks(runs, name, mode):
    run = runs(name, mode)
    started(run)
    if run.check_error is not None:
        pytest.fail(f"{name}'s own checks failed in mode {mode}:\n{run.check_error}{tail(run)}",
                    pytrace=False)
    module = load_app(name)
    if hasattr(module, "check_log"):
        module.check_log(run.log)


@pytest.mark.parametrize("name", APPS)
def test_modes_agree(runs, name):
    """Same exchanges (status, headers, body) and a byte-identical OpenAPI schema."""
    bare = runs(name, "bare")
    started(bare)
    for mode in INSTRUMENTED:
        run = runs(name, mode)
        started(run)
        for index, (want, got) in enumerate(zip(bare.transcript, run.transcript)):
            assert got == want, (f"{name}: request #{index} differs with mode {mode}\n"
                                 f"  bare:   {want}\n  {mode}: {got}{tail(run)}")
        assert len(run.transcript) == len(bare.transcript), (
            f"{name}: bare made {len(bare.transcript)} requests, {mode} {len(run.transcript)} "
            f"(its check stopped early: {run.check_error}){tail(run)}")
        assert run.openapi == bare.openapi, f"{name}: /openapi.json differs with mode {mode}"
        # The server's own error output too: telemetry adds no traceback and hides none.
        assert run.log.count("Traceback") == bare.log.count("Traceback"), tail(run, 6000)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", APPS)
def test_our_endpoints_exist_only_when_instrumented(runs, name, mode):
    """The one intended difference between the modes: our three endpoints are added."""
    run = runs(name, mode)
    started(run)
    module = load_app(name)
    standalone = getattr(module, "STANDALONE", False)
    if mode == "bare":
        if standalone:
            return  # the host answers every path itself (its transcript is compared above)
        for path, (status, _, body) in run.ours.items():
            if path not in host_paths(module):
                assert status == 404, f"bare {name} answers {path}: {status} {body[:200]!r}"
        return
    assert run.prefix_error is None, f"{name} ({mode}): {run.prefix_error}{tail(run)}"
    prefix = run.prefix
    status, content_type, body = run.ours[prefix]
    assert (status, content_type.split(";")[0]) == (200, "text/plain"), (status, body[:300])
    assert b"# TYPE http_server_request_duration_seconds histogram" in body, body[:500]
    status, _, body = run.ours[f"{prefix}/health"]
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded"), body[:300]
    status, _, body = run.ours[f"{prefix}/list"]
    assert status == 200 and json.loads(body)["count"] > 0, body[:300]
    if standalone:
        # The host routes every path, so ours are not on its port; one line says so.
        said = [line for line in run.log.splitlines()
                if "mystocks" in line.lower() and "/metrics" in line]
        assert len(said) == 1, f"one start-up line must say where our endpoints are: {said}"
    elif "/metrics" in host_paths(module):
        assert prefix != "/metrics", "the host's /metrics must stay the host's"
        said = [line for line in run.log.splitlines() if prefix in line]
        assert len(said) == 1, f"one start-up line must say where our endpoints went: {said}"


@pytest.mark.parametrize("mode", INSTRUMENTED)
@pytest.mark.parametrize("name", APPS)
def test_each_request_counted_once_under_its_template(runs, name, mode):
    run = runs(name, mode)
    started(run)
    assert run.prefix_error is None, f"{name} ({mode}): {run.prefix_error}"
    assert run.metrics is not None, f"{name} ({mode}): no exposition at {run.prefix}"
    module = load_app(name)
    observed = observed_counts(run.metrics, module, run.prefix)
    expected = resolve(expected_routes(module, run.transcript), observed)
    missing, extra = expected - observed, observed - expected
    assert not missing and not extra, (
        f"{name} ({mode}): (route, method, status) counts differ\n"
        f"  expected but not counted: {dict(missing)}\n  counted but not expected: {dict(extra)}")

    templates = {route for route, _, _ in expected}
    raw = {e.path for e in run.transcript} - templates - ours_routes(module, run.prefix)
    leaked = {(s.name, key, value) for s in samples(run.metrics)
              for key, value in s.labels.items() if value in raw}
    assert not leaked, f"{name} ({mode}): raw paths used as label values: {leaked}"

    active = Counter({s.labels.get("http_request_method"): s.value
                      for s in samples(run.metrics) if s.name == ACTIVE})
    assert all(v == 0 for v in active.values()), f"requests still active after the check: {active}"
    assert any(s.name == DURATION for s in samples(run.metrics))


WITH_METRIC_CHECKS = [name for name in APPS if hasattr(load_app(name), "check_metrics")]


@pytest.mark.parametrize("mode", INSTRUMENTED)
@pytest.mark.parametrize("name", WITH_METRIC_CHECKS)
def test_app_specific_metrics(runs, name, mode):
    """What only this app's pattern shows (e.g. WebSocket conversations)."""
    run = runs(name, mode)
    started(run)
    assert run.metrics is not None, f"{name} ({mode}): no exposition: {run.prefix_error}"
    load_app(name).check_metrics(samples(run.metrics))
