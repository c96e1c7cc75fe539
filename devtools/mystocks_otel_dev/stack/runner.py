"""``mystocks-otel stack up|down|status``: the whole monitoring stack on one machine.

``up`` starts, on 127.0.0.1 with free ports: a throwaway PostgreSQL and Redis, the demo
with several workers, VictoriaMetrics, the Collector, the notification sink, two clustered
Alertmanager peers and two Prometheus replicas (the production topology), each as its own
process group, and writes what it started to ``<dir>/state.json``. ``status`` checks every
part; ``down`` stops them all, and keeps the logs when something failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import configs

#: The files the stack runs (alerts/, prometheus/, collector/, scripts/) belong to the checkout,
#: not to this installed package: MYSTOCKS_OTEL_ROOT names it, else the nearest folder at or
#: above the current one that holds them.
ROOT_MARKERS = ("alerts/rules", "prometheus/prometheus.yml", "collector/otelcol.yaml")


def project_root(start: Path | None = None) -> Path:
    """The mystocks-otel checkout whose configs the stack runs; StackError when there is none."""
    if explicit := os.environ.get("MYSTOCKS_OTEL_ROOT"):
        candidates = [Path(explicit)]
    else:
        here = (start or Path.cwd()).resolve()
        candidates = [here, *here.parents]
    for candidate in candidates:
        if all((candidate / marker).exists() for marker in ROOT_MARKERS):
            return candidate
    where = f"MYSTOCKS_OTEL_ROOT={explicit}" if explicit else f"{Path.cwd()} or above"
    raise StackError(f"no mystocks-otel checkout at {where}: run from the repository, "
                     "or set MYSTOCKS_OTEL_ROOT to it")


DEFAULT_DIR = Path(".stack")
DEMO_WORKERS = 2
START_TIMEOUT = 60.0
#: Debian packages the stack needs, by the binary that proves each is there.
PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
            "redis-server": "redis-server"}


class StackError(RuntimeError):
    """Something the stack needs is missing or did not start; the message is one line."""


@dataclass
class Component:
    name: str
    argv: list[str]
    url: str
    ready_url: str | None = None  # None: a listening port is enough
    port: int = 0
    ports: list[int] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    user: str | None = None
    data_dir: str = ""  # kept outside the stack's folder (PostgreSQL's): removed by down
    pid: int | None = None
    log: str = ""
    state: str = "new"


# -- small helpers ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def http_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def say(message: str) -> None:
    print(message, flush=True)


# -- binaries --------------------------------------------------------------------------------

def ensure_packages() -> None:
    missing = [pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None]
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        missing.append("postgresql")
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {' '.join(missing)}: run as root or "
                         f"`apt-get install {' '.join(missing)}`")
    say(f"  installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise StackError("PostgreSQL binaries not found under /usr/lib/postgresql: "
                         "`apt-get install postgresql`")
    return found[-1].parent


def _script_output(script: str, *args: str, timeout: float) -> str:
    repo = project_root()
    path = repo / "scripts" / script if not script.startswith("collector/") else repo / script
    if not path.exists():
        raise StackError(f"{path} not found: run the stack from a mystocks-otel checkout")
    proc = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise StackError(f"{path.name} {' '.join(args)} failed: {tail[0]}")
    return proc.stdout.strip().splitlines()[-1]


def collector_binary() -> str:
    return _script_output("collector/build.sh", timeout=1800)


def victoriametrics_binary() -> str:
    return _script_output("fetch-trixie-package.sh", "victoria-metrics", timeout=600)


# -- the plan --------------------------------------------------------------------------------

def _write_overlay(workdir: Path, rule_files: list[Path]) -> list[str]:
    """The test overlay (configs.test_overlay_*): rules rewritten into workdir/rules."""
    (workdir / "rules").mkdir(exist_ok=True)
    out = []
    for path in rule_files:
        target = workdir / "rules" / path.name
        target.write_text(yaml.safe_dump(configs.test_overlay_rules(yaml.safe_load(path.read_text())),
                                         sort_keys=False))
        out.append(str(target))
    for name in ("prometheus-a.yml", "prometheus-b.yml"):
        path = workdir / name
        path.write_text(yaml.safe_dump(configs.test_overlay_prometheus(yaml.safe_load(path.read_text())),
                                       sort_keys=False))
    path = workdir / "alertmanager.yml"
    shutil.copy(path, workdir / "alertmanager-production.yml")  # kept for the MTTD derivation
    path.write_text(yaml.safe_dump(configs.test_overlay_alertmanager(yaml.safe_load(path.read_text())),
                                   sort_keys=False))
    return out


def plan(workdir: Path, test_overlay: bool = False) -> list[Component]:
    """Every component, in start order, with its ports and config files written."""
    repo = project_root()
    ensure_packages()
    pg = postgres_bin()
    otelcol, vm = collector_binary(), victoriametrics_binary()
    python = sys.executable
    p = {name: free_port() for name in (
        "postgres", "redis", "sink", "smtp", "vm", "otlp_http", "otlp_grpc", "zpages",
        "otelcol_metrics", "demo", "am_a", "am_b", "am_a_cluster", "am_b_cluster",
        "prom_a", "prom_b")}
    for sub in ("redis", "vm", "am-a", "am-b", "prom-a", "prom-b", "secrets", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    # PostgreSQL refuses to run as root, so as root it runs as postgres, which may not reach
    # into the stack's folder (pytest's are 0700): its data lives in a directory of its own.
    pg_dir = Path(tempfile.mkdtemp(prefix="mystocks-stack-pg-"))
    if os.geteuid() == 0:
        shutil.chown(pg_dir, "postgres")

    sink_url = f"http://127.0.0.1:{p['sink']}"
    demo_url = f"http://127.0.0.1:{p['demo']}"
    vm_url = f"http://127.0.0.1:{p['vm']}"
    token = secrets.token_urlsafe(24)

    # Alertmanager: the repository's template and routing, every receiver at the sink.
    from mystocks_otel_mixin.alertmanager import render_alertmanager_config, write_secret_files

    am_env = configs.alertmanager_environment(
        sink_url=sink_url, smtp_port=p["smtp"], app_webhook_url=f"{demo_url}/alerts/webhook",
        templates_dir=repo / "alerts" / "alertmanager" / "templates",
        secrets_dir=workdir / "secrets", grafana_url=os.environ.get("GRAFANA_URL", "http://localhost:3000"))
    write_secret_files(workdir / "secrets", configs.alertmanager_secrets(sink_url=sink_url, webhook_token=token))
    render_alertmanager_config(repo / "alerts" / "alertmanager" / "alertmanager.yml.tmpl",
                               workdir / "alertmanager.yml", am_env)

    targets = {
        "mystocks-api": [f"127.0.0.1:{p['demo']}"],
        "otel-collector": [f"127.0.0.1:{p['otelcol_metrics']}"],
        "prometheus": [f"127.0.0.1:{p['prom_a']}", f"127.0.0.1:{p['prom_b']}"],
        "alertmanager": [f"127.0.0.1:{p['am_a']}", f"127.0.0.1:{p['am_b']}"],
    }
    rule_files = sorted((repo / "alerts" / "rules").glob("*.yml"))
    for replica in ("a", "b"):
        configs.write_prometheus(
            workdir / f"prometheus-{replica}.yml", repo / "prometheus" / "prometheus.yml",
            replica=replica, targets=targets, rule_files=[str(p) for p in rule_files],
            alertmanagers=targets["alertmanager"], remote_write_url=f"{vm_url}/api/v1/write")
    if test_overlay:
        overlay_rules = _write_overlay(workdir, rule_files)
        for replica in ("a", "b"):
            path = workdir / f"prometheus-{replica}.yml"
            config = yaml.safe_load(path.read_text())
            config["rule_files"] = overlay_rules
            path.write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "otelcol-local.yaml").write_text(json.dumps(configs.COLLECTOR_OVERLAY))

    demo_env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{p['postgres']}/postgres",
        "REDIS_URL": f"redis://127.0.0.1:{p['redis']}/0",
        "OTEL_SERVICE_NAME": "mystocks-api",
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p['otlp_http']}",
        "MYSTOCKS_DEMO_ALERT_WEBHOOK_TOKEN": token,
        "MYSTOCKS_DEMO_FAULTS_FILE": str(workdir / "faults.json"),
    }
    if test_overlay:  # the app's own periods, not the rules': probes and pushes every second
        demo_env.update(MYSTOCKS_OTEL_PROBE_INTERVAL="1", MYSTOCKS_DEMO_HEALTH_SECONDS="1",
                        OTEL_METRIC_EXPORT_INTERVAL="1000")
    return [
        Component("postgresql", [str(pg / "postgres"), "-D", str(pg_dir / "data"),
                                 "-c", "listen_addresses=127.0.0.1", "-p", str(p["postgres"]),
                                 "-k", str(pg_dir), "-c", "fsync=off"],
                  f"postgresql://127.0.0.1:{p['postgres']}", port=p["postgres"],
                  user="postgres" if os.geteuid() == 0 else None, data_dir=str(pg_dir)),
        Component("redis", ["redis-server", "--port", str(p["redis"]), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", str(workdir / "redis")],
                  f"redis://127.0.0.1:{p['redis']}", port=p["redis"]),
        Component("sink", [python, "-m", "mystocks_otel_dev.stack.sink", "--http-port", str(p["sink"]),
                           "--smtp-port", str(p["smtp"]), "--record", str(workdir / "notifications.jsonl")],
                  sink_url + "/", f"{sink_url}/-/ready", p["sink"], [p["smtp"]]),
        Component("victoriametrics", [vm, f"-httpListenAddr=127.0.0.1:{p['vm']}",
                                      f"-storageDataPath={workdir / 'vm'}", "-retentionPeriod=1y",
                                      "-search.latencyOffset=0s", "-opentelemetry.usePrometheusNaming"],
                  vm_url + "/vmui/", f"{vm_url}/health", p["vm"]),
        Component("otel-collector", [otelcol, f"--config={repo / 'collector' / 'otelcol.yaml'}",
                                     f"--config={workdir / 'otelcol-local.yaml'}"],
                  f"http://127.0.0.1:{p['otlp_http']}", None, p["otlp_http"],
                  [p["otlp_grpc"], p["zpages"], p["otelcol_metrics"]],
                  env=configs.collector_environment(
                      otlp_http=p["otlp_http"], otlp_grpc=p["otlp_grpc"], zpages=p["zpages"],
                      telemetry=p["otelcol_metrics"], victoriametrics_url=vm_url)),
        Component("demo", [python, "-m", "uvicorn", "--factory", "mystocks_otel_dev.demo.app:create_app",
                           "--host", "127.0.0.1", "--port", str(p["demo"]), "--workers", str(DEMO_WORKERS)],
                  demo_url + "/docs", f"{demo_url}/health", p["demo"], env=demo_env),
        *(Component(f"alertmanager-{peer}", [
            "prometheus-alertmanager", f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / f'am-{peer}'}",
            f"--web.listen-address=127.0.0.1:{p[f'am_{peer}']}",
            f"--web.external-url=http://127.0.0.1:{p[f'am_{peer}']}",
            f"--cluster.listen-address=127.0.0.1:{p[f'am_{peer}_cluster']}",
            f"--cluster.advertise-address=127.0.0.1:{p[f'am_{peer}_cluster']}",
            f"--cluster.peer=127.0.0.1:{p[f'am_{other}_cluster']}"],
            f"http://127.0.0.1:{p[f'am_{peer}']}", f"http://127.0.0.1:{p[f'am_{peer}']}/-/ready",
            p[f"am_{peer}"], [p[f"am_{peer}_cluster"]]) for peer, other in (("a", "b"), ("b", "a"))),
        *(Component(f"prometheus-{replica}", [
            "prometheus", f"--config.file={workdir / f'prometheus-{replica}.yml'}",
            f"--storage.tsdb.path={workdir / f'prom-{replica}'}", "--storage.tsdb.retention.time=15d",
            f"--web.listen-address=127.0.0.1:{p[f'prom_{replica}']}", "--web.enable-lifecycle",
            "--enable-feature=exemplar-storage"],
            f"http://127.0.0.1:{p[f'prom_{replica}']}", f"http://127.0.0.1:{p[f'prom_{replica}']}/-/ready",
            p[f"prom_{replica}"]) for replica in ("a", "b")),
    ]


# -- starting and stopping -------------------------------------------------------------------

def _init_postgres(component: Component) -> None:
    data = Path(component.data_dir) / "data"
    if data.exists():
        return
    initdb = str(postgres_bin() / "initdb")
    argv = [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
    if component.user:
        argv = ["runuser", "-u", component.user, "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise StackError(f"initdb failed: {proc.stderr.strip().splitlines()[-1:]}")


def start(component: Component, workdir: Path) -> None:
    if component.name == "postgresql":
        _init_postgres(component)
    argv = component.argv
    if component.user:
        argv = ["runuser", "-u", component.user, "--", *argv]
    log = workdir / "logs" / f"{component.name}.log"
    component.log = str(log)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **component.env}, cwd=workdir,
                                start_new_session=True)
    component.pid = proc.pid


def ready(component: Component) -> bool:
    if not alive(component.pid):
        return False
    if component.ready_url is None:
        return port_open(component.port)
    return http_ok(component.ready_url)


def wait_ready(component: Component, timeout: float = START_TIMEOUT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ready(component):
            component.state = "up"
            return time.monotonic() - started
        if not alive(component.pid):
            break
        time.sleep(0.1)
    component.state = "failed"
    tail = Path(component.log).read_text(errors="replace").strip().splitlines()[-3:] if component.log else []
    raise StackError(f"{component.name} did not become ready: {' | '.join(tail) or 'no output'}")


def stop(component: Component, timeout: float = 10.0) -> None:
    if not alive(component.pid):
        return
    try:
        os.killpg(component.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(component.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(component.pid):
        try:
            os.killpg(component.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the state file --------------------------------------------------------------------------

def save(workdir: Path, components: list[Component], failed: bool) -> None:
    state = {"failed": failed, "components": [asdict(c) for c in components]}
    (workdir / "state.json").write_text(json.dumps(state, indent=2))


def load(workdir: Path) -> tuple[list[Component], bool]:
    path = workdir / "state.json"
    if not path.exists():
        return [], False
    state = json.loads(path.read_text())
    return [Component(**c) for c in state["components"]], state["failed"]


# -- the three commands ----------------------------------------------------------------------

def table(components: list[Component]) -> str:
    rows = [("component", "state", "pid", "url")]
    for c in components:
        state = "up" if ready(c) else ("running" if alive(c.pid) else "down")
        rows.append((c.name, state, str(c.pid or "-"), c.url))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def cluster_peers(components: list[Component]) -> dict[str, int]:
    """Alertmanager peer -> how many peers it sees in its cluster (2 when gossip works)."""
    out = {}
    for c in components:
        if c.name.startswith("alertmanager-"):
            try:
                out[c.name] = len(http_json(f"{c.url}/api/v2/status")["cluster"]["peers"])
            except (OSError, KeyError, ValueError):
                out[c.name] = 0
    return out


def up(workdir: Path = DEFAULT_DIR, test_overlay: bool = False) -> int:
    workdir = workdir.resolve()
    existing, _ = load(workdir)
    if any(alive(c.pid) for c in existing):
        say(f"the stack in {workdir} is already running:")
        say(table(existing))
        return 0
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    say(f"mystocks-otel stack: preparing in {workdir} (binaries, configs)")
    try:
        components = plan(workdir, test_overlay)
    except (StackError, subprocess.SubprocessError, OSError) as error:
        say(f"stack up failed: {error}")
        return 1
    failed = False
    for index, component in enumerate(components, 1):
        say(f"[{index:2}/{len(components)}] {component.name:<16} starting ...")
        try:
            start(component, workdir)
            took = wait_ready(component)
            say(f"        {component.name:<16} up in {took:.1f} s  {component.url}")
        except (StackError, OSError) as error:
            say(f"        {component.name:<16} FAILED: {error}")
            failed = True
            break
        finally:
            save(workdir, components, failed)
    if not failed:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(cluster_peers(components).values()) < 2:
            time.sleep(0.2)
    say("")
    say(table(components))
    peers = cluster_peers(components)
    say(f"Alertmanager cluster: {', '.join(f'{k} sees {v} peers' for k, v in peers.items())}")
    sink = next(c for c in components if c.name == "sink")
    prom = next(c for c in components if c.name == "prometheus-a")
    demo = next(c for c in components if c.name == "demo")
    say(f"Where to look: alerts {prom.url}/alerts  graph {prom.url}/graph  "
        f"notifications {sink.url}  metrics {demo.url.rsplit('/', 1)[0]}/metrics")
    if failed:
        say(f"stack up failed; logs in {workdir / 'logs'}; `mystocks-otel stack down` stops the rest")
        return 1
    return 0


def status(workdir: Path = DEFAULT_DIR) -> int:
    workdir = workdir.resolve()
    components, _ = load(workdir)
    if not components:
        say(f"no stack in {workdir} (`mystocks-otel stack up` starts one)")
        return 1
    say(table(components))
    peers = cluster_peers(components)
    say(f"Alertmanager cluster: {', '.join(f'{k} sees {v} peers' for k, v in peers.items())}")
    return 0 if all(ready(c) for c in components) else 1


def down(workdir: Path = DEFAULT_DIR) -> int:
    workdir = workdir.resolve()
    components, failed = load(workdir)
    if not components:
        say(f"no stack in {workdir}")
        return 0
    failed = failed or not all(ready(c) for c in components)
    for component in reversed(components):
        stop(component)
        say(f"stopped {component.name}")
    still = [f"{c.name}:{port}" for c in components for port in [c.port, *c.ports] if port and port_open(port)]
    if still:
        say(f"still listening: {', '.join(still)}")
        return 1
    for component in components:
        if component.data_dir:
            shutil.rmtree(component.data_dir, ignore_errors=True)
    if failed:
        save(workdir, components, True)
        say(f"something had failed: logs kept in {workdir / 'logs'}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# -- one component at a time (the live fault scenarios use these) -----------------------------

def stop_one(workdir: Path, name: str) -> Component:
    """Stop one running component (a real outage); its ports stay reserved in the state."""
    components, failed = load(workdir.resolve())
    component = next(c for c in components if c.name == name)
    stop(component)
    component.state = "stopped"
    save(workdir.resolve(), components, failed)
    return component


def start_one(workdir: Path, name: str) -> Component:
    """Start a stopped component again, on the same ports, and wait until it is ready."""
    workdir = workdir.resolve()
    components, failed = load(workdir)
    component = next(c for c in components if c.name == name)
    start(component, workdir)
    wait_ready(component)
    save(workdir, components, failed)
    return component
