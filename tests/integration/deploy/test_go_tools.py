"""scripts/build-go-tool.sh and tools/<name>/: the stack's Go programs, built from pinned
modules and cached (mystocks_otel_dev.stack.gotools runs it for the stack and the fixtures)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from mystocks_otel_dev.stack import gotools

#: The releases issues 15 and 16 name: tool -> (module, version, the programs its tool lines build).
PINS = {
    "prometheus": ("github.com/prometheus/prometheus", "v0.316.0", {"prometheus", "promtool"}),
    "alertmanager": ("github.com/prometheus/alertmanager", "v0.35.0", {"alertmanager", "amtool"}),
    "jaeger": ("github.com/jaegertracing/jaeger", "v1.75.0", {"jaeger"}),
    "victorialogs": ("github.com/VictoriaMetrics/VictoriaLogs", "v1.52.2", {"victoria-logs"}),
}


def tool_lines(go_mod: str) -> set[str]:
    block = re.search(r"^tool \(\n(.*?)^\)", go_mod, re.M | re.S)
    lines = block.group(1).split() if block else re.findall(r"^tool (\S+)$", go_mod, re.M)
    return set(lines)


@pytest.mark.parametrize("tool", sorted(PINS))
def test_each_manifest_pins_its_release_and_the_lock_hashes_it(root, tool):
    module, version, programs = PINS[tool]
    go_mod = (root / "tools" / tool / "go.mod").read_text()
    assert re.search(rf"^\s*{re.escape(module)} {re.escape(version)}\b", go_mod, re.M), (tool, module, version)
    assert {line.rsplit("/", 1)[1] for line in tool_lines(go_mod)} == programs
    assert all(line.startswith(module + "/") for line in tool_lines(go_mod))
    go_sum = (root / "tools" / tool / "go.sum").read_text()
    assert f"{module} {version} h1:" in go_sum and f"{module} {version}/go.mod h1:" in go_sum
    assert set(gotools.PROGRAMS[p] for p in programs) == {tool}


def fake_checkout(root, tmp_path, tool="prometheus"):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for script in ("build-go-tool.sh", "go-lib.sh"):
        shutil.copy(root / "scripts" / script, checkout / "scripts")
    shutil.copytree(root / "tools" / tool, checkout / "tools" / tool)
    return checkout


def run(script, *args, env=None, timeout=60):
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})})


def test_path_names_the_build_for_these_pins_and_builds_nothing(root, tmp_path):
    checkout = fake_checkout(root, tmp_path)
    script, cache = checkout / "scripts" / "build-go-tool.sh", tmp_path / "cache"
    env = {"GO_TOOLS_CACHE": str(cache)}
    first = run(script, "prometheus", "--path", env=env)
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip()
    assert re.fullmatch(rf"{re.escape(str(cache))}/prometheus-[0-9a-f]{{16}}", path)
    assert not cache.exists()  # nothing built, no Go state
    assert run(script, "prometheus", "--path", env=env).stdout.strip() == path
    # The real checkout's pins give the same key (same manifest, lock, recipe).
    assert run(root / "scripts" / "build-go-tool.sh", "prometheus", "--path", env=env).stdout.strip() == path
    # A changed lock (or manifest, build.conf, script) is another build.
    lock = checkout / "tools" / "prometheus" / "go.sum"
    lock.write_text(lock.read_text() + "example.com/x v1.0.0 h1:AAAA=\n")
    assert run(script, "prometheus", "--path", env=env).stdout.strip() != path


def test_an_unknown_tool_or_argument_fails_with_one_line(root, tmp_path):
    script = root / "scripts" / "build-go-tool.sh"
    env = {"GO_TOOLS_CACHE": str(tmp_path / "cache")}
    unknown = run(script, "grafana", env=env)
    assert unknown.returncode == 1 and "no tools/grafana/go.mod" in unknown.stderr
    assert "prometheus" in unknown.stderr  # it lists the tools there are
    bad = run(script, "prometheus", "--frobnicate", env=env)
    assert bad.returncode == 1 and "unknown argument" in bad.stderr
    assert run(script, "../etc", env=env).returncode == 1


def test_no_go_toolchain_is_exit_2_which_the_fixtures_skip_on(root, tmp_path):
    checkout = fake_checkout(root, tmp_path)
    done = run(checkout / "scripts" / "build-go-tool.sh", "prometheus",
               env={"GO_TOOLS_CACHE": str(tmp_path / "cache"), "GO_TOOLS_GO": str(tmp_path / "no-go")})
    assert done.returncode == gotools.UNAVAILABLE, done.stderr
    assert "no Go toolchain" in done.stderr
    with pytest.raises(gotools.BuildError) as error:
        gotools.build(checkout, "nonexistent-tool")
    assert not error.value.unavailable


def test_built_prometheus_and_alertmanager_are_the_pinned_releases(promtool, amtool, prometheus_binary,
                                                                   alertmanager_binary, root):
    for binary, version in ((promtool, "3.16.0"), (prometheus_binary, "3.16.0"), (amtool, "0.35.0"),
                            (alertmanager_binary, "0.35.0")):
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and f"version {version}" in out.stdout + out.stderr, (binary, out)
    # Cached: the second call only prints the folder (no Go runs).
    began = time.monotonic()
    assert str(gotools.build(root, "prometheus")) == str(gotools.cached_dir(root, "prometheus"))
    assert time.monotonic() - began < 5
    info = (gotools.cached_dir(root, "prometheus") / "build.info").read_text()
    assert "tags: remove_all_sd" in info


def test_alertmanager_ui_is_the_page_pointing_at_the_api(alertmanager_binary, tmp_path, root):
    """The module lacks Alertmanager's built UI; the build serves tools/alertmanager/overlay/
    (Alertmanager serves HTML only gzipped: each index.html.gz is its index.html, gzip -n -9)."""
    import gzip

    from mystocks_otel_dev.stack import processes

    for page in (root / "tools" / "alertmanager" / "overlay").rglob("index.html"):
        assert gzip.decompress(page.with_suffix(".html.gz").read_bytes()) == page.read_bytes(), page

    config = tmp_path / "am.yml"
    config.write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    with processes.Processes(tmp_path / "procs") as procs:
        am = procs.start(processes.alertmanager(config, tmp_path / "data", binary=alertmanager_binary))
        import urllib.request

        for path in ("/", "/ui/"):
            page = urllib.request.urlopen(am.url + path, timeout=5).read().decode()
            assert "api/v2/alerts" in page and "amtool" in page, path


FAKE_SCRIPT = r"""#!/usr/bin/env bash
# a stand-in for scripts/build-go-tool.sh: --path prints the folder; a build takes a second
out={cache}/$1
if [[ ${{2:-}} == --path || -d $out ]]; then echo "$out"; exit 0; fi
echo "$1" >>{cache}/order
sleep 1
mkdir -p "$out"
case $1 in victorialogs) p=victoria-logs ;; *) p=$1 ;; esac
printf '#!/bin/sh\n' >"$out/$p" && chmod +x "$out/$p"
echo "$out"
"""


def test_prebuild_starts_the_missing_builds_in_order_and_returns_at_once(tmp_path):
    """The test session's head start (tests/conftest.py): the builds run one after the other
    in the background, detached; a tool already built is not started again."""
    checkout, cache = tmp_path / "checkout", tmp_path / "cache"
    (checkout / "scripts").mkdir(parents=True)
    cache.mkdir()
    script = checkout / "scripts" / "build-go-tool.sh"
    script.write_text(FAKE_SCRIPT.format(cache=cache))
    script.chmod(0o755)
    began = time.monotonic()
    proc = gotools.prebuild(checkout, ["victorialogs", "jaeger"], tmp_path / "prebuild.log")
    assert time.monotonic() - began < 1.5 and proc.poll() is None  # it did not wait for the builds
    assert proc.wait(20) == 0
    assert (cache / "order").read_text().split() == ["victorialogs", "jaeger"]
    assert gotools.build(checkout, "jaeger") == cache / "jaeger"  # cached now: no second build
    assert gotools.prebuild(checkout, ["victorialogs", "jaeger"], tmp_path / "prebuild.log") is None
    assert (cache / "order").read_text().split() == ["victorialogs", "jaeger"]
