"""docker-compose.yml: valid for a real docker-compose, pinned, health-checked, secret-free."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

# Bind-mount sources that are not in the repository, and why.
GENERATED = {
    "alerts/alertmanager/rendered/alertmanager.yml":
        "rendered from the template in alerts/alertmanager/ before `up`",
    "alerts/alertmanager/secrets": "written 0600 by scripts/render-alertmanager.sh; git-ignored",
}
# No healthcheck possible: no shell in the image. collector-health probes it instead.
NO_HEALTHCHECK = {"otel-collector"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|SERVICE_KEY|ROUTING_KEY|WEBHOOK", re.I)
SECRET_VALUE = re.compile(
    r"hooks\.slack\.com|events\.pagerduty\.com|://[^/\s:@]+:[^/\s@]+@"  # webhook hosts, user:pass@
    r"|^(?!/)[A-Za-z0-9+/_=-]{32,}$"  # a long opaque token (not a path)
)


def _bind_sources(service: dict) -> list[str]:
    out = []
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        if source.startswith("."):
            out.append(source.removeprefix("./").rstrip("/"))
    return out


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_docker_compose_accepts_the_file(docker_compose, root):
    proc = subprocess.run([docker_compose, "-f", "docker-compose.yml", "config", "--quiet"],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_docker_compose_rejects_a_broken_file(docker_compose, tmp_path):
    # The check above can fail: a dangling depends_on is an error.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  a:\n    image: busybox:1.36.1\n    depends_on: [missing]\n")
    proc = subprocess.run([docker_compose, "-f", str(broken), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "missing" in proc.stderr


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) >= {"app", "otel-collector", "collector-health", "prometheus",
                                        "alertmanager", "grafana", "victoriametrics"}


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image or "build" in service, f"{name}: neither image nor build"
        if image is None:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_dockerfile_base_is_pinned_and_runs_the_demo(root, compose, prometheus_config):
    text = (root / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    # The demo lives in the dev tools' distribution, beside the library and the mixin.
    assert "pip install . ./mixin ./devtools" in text
    cmd = re.search(r"^CMD\s+(.+)$", text, re.M).group(1)
    assert cmd == '["mystocks-otel", "demo", "--host", "0.0.0.0", "--port", "8000"]'
    # The port the app listens on is the one compose publishes and Prometheus scrapes.
    assert "127.0.0.1:8000:8000" in compose["services"]["app"]["ports"]
    app_job = next(j for j in prometheus_config["scrape_configs"] if j["job_name"] == "mystocks-api")
    assert app_job["static_configs"][0]["targets"] == ["app:8000"]


def test_dockerfile_copies_files_that_exist(root):
    text = (root / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (root / source).exists(), f"Dockerfile copies {source}, missing from the repo"


def test_the_image_command_exists(need, root):
    # CMD runs `mystocks-otel demo --host 0.0.0.0 --port 8000`: the CLI must accept it.
    need(importlib.util.find_spec("mystocks_otel.cli") is not None, "mystocks_otel.cli not written yet")
    proc = subprocess.run([sys.executable, "-m", "mystocks_otel.cli", "demo", "--help"],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--host" in proc.stdout and "--port" in proc.stdout


def test_dockerignore_admits_only_the_package(root):
    lines = [l.strip() for l in (root / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*", "start from an allow-list so secrets/ and .venv never get in"
    admitted = {l[1:].strip("/") for l in lines if l.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "mystocks_otel", "mixin/pyproject.toml",
                        "mixin/mystocks_otel_mixin", "devtools/pyproject.toml",
                        "devtools/mystocks_otel_dev"}


def test_every_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name in NO_HEALTHCHECK:
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {check['test']}"
    # The collector is probed from outside, against the health_check extension.
    sidecar = compose["services"]["collector-health"]
    assert "otel-collector:13133" in " ".join(sidecar["healthcheck"]["test"])


def test_no_secret_values_in_the_environment(compose, root):
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            assert not SECRET_VALUE.search(value), f"{name}: {key} looks like a secret"
            if SECRET_NAME.search(key):
                # Only the file-indirection form is allowed: VAR__FILE=/run/secrets/...
                assert key.endswith("_FILE") and value.startswith(("/run/secrets/", "/etc/")), (
                    f"{name}: {key} must be read from a secret file, not set inline")
    text = (root / "docker-compose.yml").read_text()
    assert not re.search(r"hooks\.slack\.com|pagerduty\.com/|smtp_auth_password", text)
    for secret in compose.get("secrets", {}).values():
        assert secret["file"].startswith("./secrets/"), secret


def test_generated_mount_sources_stay_out_of_git(root, compose):
    paths = [f"{p}/x" if not p.endswith(".yml") else p for p in GENERATED]
    paths += [s["file"].removeprefix("./") for s in compose.get("secrets", {}).values()]
    for path in paths:
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=root, timeout=30)
        assert proc.returncode == 0, f"{path} must be git-ignored (it holds or renders secrets)"


@pytest.mark.parametrize("service", ["otel-collector", "prometheus", "alertmanager", "grafana"])
def test_mounted_paths_exist_or_are_generated(compose, root, service):
    for source in _bind_sources(compose["services"][service]):
        assert (root / source).exists() or source in GENERATED, (
            f"{service} mounts ./{source}, which is neither in the repository nor generated")


def test_data_lives_in_named_volumes(compose):
    declared = set(compose.get("volumes", {}))
    for name in ("prometheus", "alertmanager", "grafana", "victoriametrics"):
        volumes = compose["services"][name]["volumes"]
        named = {v.split(":", 1)[0] for v in volumes if not v.startswith(".")}
        assert named and named <= declared, f"{name}: named volumes {named} vs {declared}"
