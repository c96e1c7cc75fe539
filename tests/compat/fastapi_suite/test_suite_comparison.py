"""The FastAPI-suite comparison on synthetic JUnit reports (fast; FastAPI's suite is not run):
no test that passes bare may fail under the distro, and a bare failure is the environment's."""

from __future__ import annotations

import re

import suite

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
{cases}
</testsuite></testsuites>"""

CHILD = {"passed": "", "failure": '<failure message="boom">boom</failure>',
         "error": '<error message="setup">setup</error>', "skipped": '<skipped message="no"/>'}


def junit(tmp_path, name, results: dict[str, str]):
    cases = []
    for test_id, outcome in results.items():
        classname, test = test_id.split("::")
        cases.append(f'<testcase classname="{classname}" name="{test}" time="0.01">'
                     f"{CHILD[outcome]}</testcase>")
    path = tmp_path / f"{name}.xml"
    path.write_text(JUNIT.format(cases="\n".join(cases)))
    return suite.outcomes(path)


def test_outcomes_read_each_kind_from_junit(tmp_path):
    results = {"tests.test_a::test_ok": "passed", "tests.test_a::test_bad": "failure",
               "tests.test_b::test_setup[1]": "error", "tests.test_b::test_skip": "skipped"}
    assert junit(tmp_path, "run", results) == results


def test_only_a_test_that_passed_bare_counts_against_the_distro(tmp_path):
    bare = junit(tmp_path, "bare", {
        "t.a::same_pass": "passed", "t.a::regressed": "passed", "t.a::errored": "passed",
        "t.a::skipped_now": "passed", "t.a::env_fail": "failure", "t.a::env_error": "error",
        "t.a::env_fixed": "failure", "t.a::skipped_both": "skipped", "t.a::vanished": "passed",
        "t.a::excused": "passed"})
    instrumented = junit(tmp_path, "instrumented", {
        "t.a::same_pass": "passed", "t.a::regressed": "failure", "t.a::errored": "error",
        "t.a::skipped_now": "skipped", "t.a::env_fail": "failure", "t.a::env_error": "failure",
        "t.a::env_fixed": "passed", "t.a::skipped_both": "skipped", "t.a::excused": "failure"})

    result = suite.compare(bare, instrumented, {"t.a::excused"})

    assert result.ours == {"t.a::regressed": "failure", "t.a::errored": "error",
                           "t.a::skipped_now": "skipped", "t.a::vanished": "missing"}
    assert result.environment == {"t.a::env_fail": ("failure", "failure"),
                                  "t.a::env_error": ("error", "failure"),
                                  "t.a::env_fixed": ("failure", "passed")}
    assert result.excused == {"t.a::excused": "failure"}
    report = result.report()
    assert "3 test(s) fail bare, so the environment's" in report
    assert "  t.a::regressed: passed -> failure" in report


def test_a_green_pair_has_nothing_to_report():
    runs = {"t.a::one": "passed", "t.a::two": "skipped"}
    result = suite.compare(runs, dict(runs))
    assert (result.ours, result.environment, result.excused) == ({}, {}, {})
    assert result.report() == ""


def test_an_exception_that_fails_bare_is_the_environments():
    result = suite.compare({"t.a::x": "failure"}, {"t.a::x": "failure"}, {"t.a::x"})
    assert result.environment == {"t.a::x": ("failure", "failure")} and not result.excused


def test_constraints_pin_every_package_exactly_for_the_installed_fastapi():
    lines = [line for line in suite.CONSTRAINTS.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) > 50
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+!\-]+", line) for line in lines), lines
    names = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    assert "mystocks-otel" not in names and "fastapi" not in names
    assert "sentry-sdk==2." in suite.CONSTRAINTS.read_text()  # 3.x turns FastAPI's own tests red
    assert suite.constraints_fastapi() == suite.installed_version()
