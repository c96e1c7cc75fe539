"""``mystocks-otel stack up|down|status``: the whole monitoring stack on one machine.

``up`` starts, on 127.0.0.1 with free ports: a throwaway PostgreSQL and Redis, the demo
with several workers, VictoriaMetrics, the trace store (Jaeger v2), the log store
(VictoriaLogs), the Collector, the notification sink, two clustered Alertmanager peers and two
Prometheus replicas (the production topology) and a read-only Prometheus console for the web
UI, each as its own process group, and writes what it started to ``<dir>/state.json``.
``status`` checks every part (``--json``: every part's state and URLs, for tools and tests);
``down`` stops them all, and keeps the logs when something failed.

Prometheus 3.16, Alertmanager 0.35, Jaeger and VictoriaLogs are built from their pinned Go
modules on first use (:mod:`.gotools`), the Collector by ``collector/build.sh``.

Starting, readiness, the state file and stopping are the process harness's
(:mod:`.processes`); this module plans the stack: its ports, its configs, its start order.

A single-user dev stack on loopback, safe on a shared machine: the stack's folder is 0700
and its secrets 0600; PostgreSQL and Redis take generated passwords (the demo gets them in
its environment); Prometheus has no lifecycle or admin API; Alertmanager's HTTP API needs the
owner's basic auth and its peers gossip over mutual TLS; VictoriaMetrics' delete, snapshot and
admin endpoints need the owner's authKey; the demo's fault switches need a bearer token.
``up`` on a stack that runs restarts the parts that died.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import yaml

from . import configs, gotools, processes
from .processes import PortLease, Process, ProcessError, Processes, Spec

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
#: The flags of both Prometheus replicas. No ``--web.enable-lifecycle`` and no
#: ``--web.enable-admin-api``: on a shared machine any local user could reload, stop or
#: delete through them. The stack's owner reloads a config with SIGHUP.
PROMETHEUS_FLAGS = ("--storage.tsdb.retention.time=15d", "--enable-feature=exemplar-storage",
                    "--web.enable-otlp-receiver")
#: The one user of the stack's locked doors (Alertmanager's basic auth), and its files in
#: ``<dir>/secrets`` (a 0700 folder in the 0700 stack folder, each file 0600).
OWNER = "stack"
OWNER_PASSWORD_FILE = "owner-password"  # the password alone: Prometheus' password_file, VM's authKey
OWNER_CREDENTIALS_FILE = "owner-credentials"  # user:password (curl -u "$(cat ...)"), the harness' checks
ALERTMANAGER_WEB_CONFIG = "alertmanager-web.yml"  # bcrypt hash of the password
# and gossip.key, gossip.crt, alertmanager-cluster-tls.yml: the peers' mutual TLS
POSTGRES_URL_FILE = "postgres-url"  # the demo's DATABASE_URL, password included
REDIS_URL_FILE = "redis-url"  # the demo's REDIS_URL, password included
DEMO_ADMIN_TOKEN_FILE = "demo-admin-token"  # the demo's /admin/faults bearer token
START_TIMEOUT = 60.0
#: Debian packages the stack needs, by the binary that proves each is there (Debian's
#: prometheus only for the console's web UI: the stack's Prometheus is built from its module).
PACKAGES = {"prometheus": "prometheus", "redis-server": "redis-server"}
#: The trace store's bound (Jaeger's in-memory storage drops the oldest traces beyond it) and
#: the log store's (days kept, and a disk cap that drops the oldest days first).
JAEGER_MAX_TRACES = 20000
VICTORIALOGS_RETENTION = "7d"
VICTORIALOGS_MAX_DISK_BYTES = 1 << 30


class StackError(RuntimeError):
    """Something the stack needs is missing or did not start; the message is one line."""


#: What ``load`` returns: one started (or planned) part of the stack.
Component = Process


# -- small helpers ---------------------------------------------------------------------------

def http_json(url: str, timeout: float = 3.0, auth_file: str | None = None):
    request = urllib.request.Request(url, headers=processes.basic_auth_header(auth_file) if auth_file else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def owner_credentials(workdir: Path) -> tuple[str, str]:
    """The stack owner's user and password (read from the 0600 file)."""
    user, _, password = (workdir / "secrets" / OWNER_CREDENTIALS_FILE).read_text().strip().partition(":")
    return user, password


def write_owner_secrets(secrets_dir: Path) -> dict[str, Path]:
    """A new owner password, in the files Prometheus, Alertmanager, VictoriaMetrics and the
    owner read; the folder 0700, every file 0600."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    password = secrets.token_urlsafe(24)
    return {
        "password": processes.write_private(secrets_dir / OWNER_PASSWORD_FILE, password),
        "credentials": processes.write_private(secrets_dir / OWNER_CREDENTIALS_FILE, f"{OWNER}:{password}\n"),
        "web_config": processes.web_config(secrets_dir / ALERTMANAGER_WEB_CONFIG, OWNER, password),
        "cluster_tls": processes.cluster_tls(secrets_dir),
    }


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


def _script_path(script: str) -> Path:
    repo = project_root()
    path = repo / "scripts" / script if not script.startswith("collector/") else repo / script
    if not path.exists():
        raise StackError(f"{path} not found: run the stack from a mystocks-otel checkout")
    return path


def _script_output(script: str, *args: str, timeout: float, label: str | None = None) -> str:
    """The last line a script prints on stdout (a path). Its stderr is its progress: with
    ``label`` each line is shown as it comes (``  label: line``), else it is kept quiet; the
    last line names the failure either way."""
    path = _script_path(script)
    lines: list[str] = []
    proc = subprocess.Popen([str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1)

    def relay() -> None:
        for line in proc.stderr:
            line = line.rstrip("\n")
            lines.append(line)
            if label is not None:
                say(f"  {label}: {line.removeprefix(path.name + ': ').removeprefix(script + ': ')}")

    out: list[str] = []
    readers = [threading.Thread(target=relay, daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise StackError(f"{path.name} {' '.join(args)} took over {timeout:.0f} s") from None
    finally:
        for reader in readers:
            reader.join(10)
    if proc.returncode != 0:
        tail = [line for line in lines if line.strip()][-1:] or ["(no output)"]
        raise StackError(f"{path.name} {' '.join(args)} failed: {tail[0]}")
    last = "".join(out).strip().splitlines()[-1:]
    if not last:
        raise StackError(f"{path.name} {' '.join(args)} printed no path")
    return last[0]


#: What the first Collector build costs, said before it starts (collector/build.sh; seen on
#: this 2-core machine: 221 s, 257 module zips of 201 MB, 1.9 GB in collector-build; the issue
#: saw about 7 minutes on a busy one).
COLLECTOR_FIRST_BUILD = ("the Collector is built once from Go modules: the first build downloads "
                         "~250 Go modules (~200 MB) and takes 4-7 minutes on 2 cores (~2 GB of Go "
                         "build state in {work}); later runs reuse the binary")


def collector_binary() -> str:
    cached = Path(_script_output("collector/build.sh", "--path", timeout=60))
    if not os.access(cached, os.X_OK):
        say("  " + COLLECTOR_FIRST_BUILD.format(work=cached.parent / "collector-build"))
    return _script_output("collector/build.sh", timeout=1800, label="collector")


def go_program(program: str) -> str:
    """A program of :mod:`.gotools`, built first when needed (its first build's cost is said
    before it starts, its progress shown as ``<tool>: ...`` lines)."""
    tool = gotools.PROGRAMS[program]
    repo = project_root()
    try:
        if not gotools.is_built(repo, program):
            say(f"  {tool} is built once from its pinned Go module: {gotools.FIRST_BUILD[tool]}; "
                "later runs reuse the binary")
        return gotools.binary(repo, program, on_line=lambda line: say(f"  {tool}: {line}"))
    except gotools.BuildError as error:
        raise StackError(str(error)) from None


def victoriametrics_binary() -> str:
    return _script_output("fetch-trixie-package.sh", "victoria-metrics", timeout=600,
                          label="victoria-metrics")


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


#: Every port of the stack, by name: one PortLease holds them all from the plan until each
#: part starts (so no two parts, and no two stacks, get the same port).
PORT_NAMES = ("postgres", "redis", "sink", "smtp", "vm", "otlp_http", "otlp_grpc", "zpages",
              "otelcol_metrics", "otelcol_exporter", "otelcol_health", "demo", "am_a", "am_b", "am_a_cluster",
              "am_b_cluster", "prom_a", "prom_b", "prom_ui", "jaeger_query", "jaeger_query_grpc",
              "jaeger_otlp_grpc", "jaeger_otlp_http", "jaeger_health", "jaeger_metrics", "vl")


def plan(workdir: Path, test_overlay: bool = False, ports: PortLease | None = None) -> list[Spec]:
    """Every component, in start order, with its ports (``ports``, a lease of PORT_NAMES the
    caller releases part by part; else one of its own, released on return) and config files
    written."""
    if ports is None:
        with PortLease(PORT_NAMES) as own:
            return _plan(workdir, test_overlay, own.ports)
    return _plan(workdir, test_overlay, ports.ports)


def _plan(workdir: Path, test_overlay: bool, p: dict[str, int]) -> list[Spec]:
    repo = project_root()
    ensure_packages()
    # In the order the tests need them: Prometheus and Alertmanager first (promtool, amtool).
    prometheus_bin, alertmanager_bin = go_program("prometheus"), go_program("alertmanager")
    otelcol, vm = collector_binary(), victoriametrics_binary()
    jaeger_bin, victorialogs_bin = go_program("jaeger"), go_program("victoria-logs")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)  # configs, state.json (the database password), logs: the owner's only
    for sub in ("redis", "vm", "vl", "am-a", "am-b", "prom-a", "prom-b", "prom-ui", "secrets", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)

    owner = write_owner_secrets(workdir / "secrets")
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
        "otel-collector": [f"127.0.0.1:{p['otelcol_metrics']}", f"127.0.0.1:{p['otelcol_exporter']}"],
        "prometheus": [f"127.0.0.1:{p['prom_a']}", f"127.0.0.1:{p['prom_b']}"],
        "alertmanager": [f"127.0.0.1:{p['am_a']}", f"127.0.0.1:{p['am_b']}"],
    }
    rule_files = sorted((repo / "alerts" / "rules").glob("*.yml"))
    for replica in ("a", "b"):
        configs.write_prometheus(
            workdir / f"prometheus-{replica}.yml", repo / "prometheus" / "prometheus.yml",
            replica=replica, targets=targets, rule_files=[str(p) for p in rule_files],
            alertmanagers=targets["alertmanager"], remote_write_url=f"{vm_url}/api/v1/write",
            alertmanager_auth={"username": OWNER, "password_file": str(owner["password"])})
    if test_overlay:
        overlay_rules = _write_overlay(workdir, rule_files)
        for replica in ("a", "b"):
            path = workdir / f"prometheus-{replica}.yml"
            config = yaml.safe_load(path.read_text())
            config["rule_files"] = overlay_rules
            path.write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "otelcol-local.yaml").write_text(json.dumps(configs.COLLECTOR_OVERLAY))
    configs.write_prometheus_console(workdir / "prometheus-ui.yml", f"http://127.0.0.1:{p['prom_a']}")

    # PostgreSQL: a generated password (scram-sha-256); the demo gets it in its environment,
    # which only the owner can read (/proc/<pid>/environ is 0400), never on a command line.
    # PostgreSQL refuses to run as root, so as root it runs as postgres, which may not reach
    # into the stack's folder (pytest's are 0700): the builder gives it a directory of its own.
    postgres = processes.postgres_server(p["postgres"])
    processes.write_private(workdir / "secrets" / POSTGRES_URL_FILE, postgres.url + "\n")
    # Redis: the same, a generated password (requirepass) in the demo's REDIS_URL.
    redis = processes.redis_server(workdir / "redis", p["redis"], password=secrets.token_hex(16))
    # The demo's fault switches: a bearer token only the owner can read.
    admin_token = secrets.token_urlsafe(24)
    processes.write_private(workdir / "secrets" / DEMO_ADMIN_TOKEN_FILE, admin_token + "\n")
    processes.write_private(workdir / "secrets" / REDIS_URL_FILE, redis.url + "\n")
    demo_env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "OTEL_SERVICE_NAME": "mystocks-api",
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p['otlp_http']}",
        # Traces and logs to the Collector, which sends them on to Jaeger and VictoriaLogs.
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "MYSTOCKS_DEMO_ALERT_WEBHOOK_TOKEN": token,
        "MYSTOCKS_DEMO_FAULTS_FILE": str(workdir / "faults.json"),
        "MYSTOCKS_DEMO_ADMIN_TOKEN": admin_token,
    }
    if test_overlay:  # the app's own periods, not the rules': probes and pushes every second
        demo_env.update(MYSTOCKS_OTEL_PROBE_INTERVAL="1", MYSTOCKS_DEMO_HEALTH_SECONDS="1",
                        OTEL_METRIC_EXPORT_INTERVAL="1000")
    postgres.url = f"postgresql://127.0.0.1:{p['postgres']}"  # displayed: no password
    redis.url = f"redis://127.0.0.1:{p['redis']}/0"  # displayed: no password
    demo = processes.uvicorn("mystocks_otel_dev.demo.app:create_app", p["demo"], "--factory",
                             "--workers", str(DEMO_WORKERS), env=demo_env, name="demo")
    demo.url = demo_url + "/docs"
    jaeger = processes.jaeger(jaeger_bin, repo / "jaeger" / "jaeger.yaml", query_port=p["jaeger_query"],
                              query_grpc_port=p["jaeger_query_grpc"], otlp_grpc_port=p["jaeger_otlp_grpc"],
                              otlp_http_port=p["jaeger_otlp_http"], health_port=p["jaeger_health"],
                              telemetry_port=p["jaeger_metrics"], max_traces=JAEGER_MAX_TRACES)
    victorialogs = processes.victorialogs(victorialogs_bin, workdir / "vl", p["vl"],
                                          retention=VICTORIALOGS_RETENTION,
                                          max_disk_bytes=VICTORIALOGS_MAX_DISK_BYTES)
    collector = processes.otel_collector(
        otelcol, [repo / "collector" / "otelcol.yaml", repo / "collector" / "overlay-contrib.yaml",
                  workdir / "otelcol-local.yaml"],
        configs.collector_environment(otlp_http=p["otlp_http"], otlp_grpc=p["otlp_grpc"], zpages=p["zpages"],
                                      telemetry=p["otelcol_metrics"], exporter=p["otelcol_exporter"],
                                      health=p["otelcol_health"], victoriametrics_url=vm_url,
                                      prometheus_url=f"http://127.0.0.1:{p['prom_a']}",
                                      jaeger_otlp_http=jaeger.urls["otlp_http"],
                                      victorialogs_url=f"http://127.0.0.1:{p['vl']}"),
        p["otlp_http"], [p["otlp_grpc"], p["zpages"], p["otelcol_metrics"], p["otelcol_exporter"],
                         p["otelcol_health"]])
    collector.urls = {"otlp_http": f"http://127.0.0.1:{p['otlp_http']}", "otlp_grpc": f"127.0.0.1:{p['otlp_grpc']}",
                      "metrics": f"http://127.0.0.1:{p['otelcol_metrics']}/metrics",
                      "exporter": f"http://127.0.0.1:{p['otelcol_exporter']}/metrics",
                      "zpages": f"http://127.0.0.1:{p['zpages']}/debug/pipelinez"}
    victoria = processes.victoriametrics(vm, workdir / "vm", p["vm"], "-retentionPeriod=1y",
                                         "-opentelemetry.usePrometheusNaming", auth_key_file=owner["password"])
    victoria.url = vm_url + "/vmui/"
    victoria.urls = {"query": f"{vm_url}/api/v1/query", "ui": vm_url + "/vmui/"}
    demo.urls = {"api": demo_url, "metrics": f"{demo_url}/metrics", "health": f"{demo_url}/metrics/health",
                 "faults": f"{demo_url}/admin/faults", "docs": f"{demo_url}/docs"}
    replicas = [processes.prometheus(workdir / f"prometheus-{replica}.yml", workdir / f"prom-{replica}",
                                     p[f"prom_{replica}"], *PROMETHEUS_FLAGS, name=f"prometheus-{replica}",
                                     binary=prometheus_bin)
                for replica in ("a", "b")]
    console = processes.prometheus_console(workdir / "prometheus-ui.yml", workdir / "prom-ui", p["prom_ui"])
    for replica in replicas:
        replica.urls = {"api": replica.url, "alerts": f"{replica.url}/api/v1/alerts",
                        "rules": f"{replica.url}/api/v1/rules", "otlp": f"{replica.url}/api/v1/otlp/v1/metrics",
                        "ui": console.url}
    console.urls = {"graph": console.url, "reads": replicas[0].url}
    return [
        postgres,
        redis,
        processes.sink(workdir / "notifications.jsonl", p["sink"], p["smtp"]),
        victoria,
        jaeger,
        victorialogs,
        collector,
        demo,
        *(processes.alertmanager(workdir / "alertmanager.yml", workdir / f"am-{peer}", p[f"am_{peer}"],
                                 name=f"alertmanager-{peer}", cluster_port=p[f"am_{peer}_cluster"],
                                 peers=[p[f"am_{other}_cluster"]], web_config_file=owner["web_config"],
                                 auth_file=owner["credentials"], cluster_tls_file=owner["cluster_tls"],
                                 binary=alertmanager_bin)
          for peer, other in (("a", "b"), ("b", "a"))),
        *replicas,
        console,
    ]


# -- the state file (the harness's) -----------------------------------------------------------

def load(workdir: Path) -> tuple[list[Process], bool]:
    """What ``up`` started in ``workdir`` (empty without a stack), and whether something failed."""
    procs = Processes.attach(workdir.resolve())
    return procs.children, procs.failed


# -- the three commands ----------------------------------------------------------------------

def table(components: list[Process]) -> str:
    rows = [("component", "state", "pid", "url")]
    for c in components:
        rows.append((c.name, part_state(c), str(c.pid or "-"), c.url))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def cluster_peers(components: list[Process]) -> dict[str, int]:
    """Alertmanager peer -> how many peers it sees in its cluster (2 when gossip works)."""
    out = {}
    for c in components:
        if c.name.startswith("alertmanager-"):
            try:
                out[c.name] = len(http_json(f"{c.url}/api/v2/status", auth_file=c.auth_file or None)
                                  ["cluster"]["peers"])
            except (OSError, KeyError, ValueError):
                out[c.name] = 0
    return out


def up(workdir: Path = DEFAULT_DIR, test_overlay: bool = False) -> int:
    workdir = workdir.resolve()
    existing, _ = load(workdir)
    if any(c.alive() for c in existing):
        return restart_dead(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    say(f"mystocks-otel stack: preparing in {workdir} (binaries, configs)")
    try:
        ports = PortLease(PORT_NAMES)
    except ProcessError as error:
        say(f"stack up failed: {error}")
        return 1
    with ports:  # each part's ports are released right before it starts, the rest at the end
        try:
            specs = plan(workdir, test_overlay, ports)
        except (StackError, ProcessError, subprocess.SubprocessError, OSError) as error:
            say(f"stack up failed: {error}")
            return 1
        return start_all(workdir, specs, ports)


def start_all(workdir: Path, specs: list[Spec], ports: PortLease) -> int:
    """Start the plan's parts in order, each once its ports are released; stop them all when
    one fails. A part whose port another process took fails at once with one line: its ports
    are in the other parts' configs, so it cannot move to a new one (``up`` again plans anew)."""
    # The harness owns every child: if a part fails (or this process is interrupted), leaving
    # the block stops all that started. On success detach() leaves them running for `down`.
    with Processes(workdir, state_file=True) as procs:
        for spec in specs:
            procs.add(spec)
        for index, proc in enumerate(procs, 1):
            say(f"[{index:2}/{len(procs.children)}] {proc.name:<16} starting ...")
            try:
                ports.release(proc.port, *proc.ports)
                procs.start(proc, wait=False)
                took = procs.wait_ready(proc, START_TIMEOUT)
                say(f"        {proc.name:<16} up in {took:.1f} s  {proc.url}")
            except (ProcessError, OSError) as error:
                say(f"        {proc.name:<16} FAILED: {error}")
                procs.failed = True
                break
        components = procs.children
        if not procs.failed:
            try:
                processes.wait_until(lambda: min(cluster_peers(components).values()) >= 2, 30,
                                     "Alertmanager peers to see each other", 0.2)
            except TimeoutError:
                pass  # the table below says how many each sees
        say("")
        say(table(components))
        peers = cluster_peers(components)
        say(f"Alertmanager cluster: {', '.join(f'{k} sees {v} peers' for k, v in peers.items())}")
        sink, demo, ui = procs["sink"], procs["demo"], procs["prometheus-ui"]
        say(f"Where to look: graph {ui.url}  alerts {procs['prometheus-a'].urls['alerts']}  "
            f"notifications {sink.url}  metrics {demo.urls['metrics']}")
        say(f"  traces {procs['jaeger'].urls['trace']}  logs {procs['victorialogs'].urls['query']}?query=...  "
            "(`mystocks-otel stack status --json` lists every door)")
        if procs.failed:
            say(f"stack up failed; everything it started is stopped; logs in {workdir / 'logs'}")
            return 1
        procs.detach()
    return 0


def restart_dead(workdir: Path) -> int:
    """``up`` on a stack that runs: every part that is no longer the process it started (it
    exited, or its pid now belongs to another process) is started again, in order, on its
    ports; 0 when every part is then up, 1 (with the part's log) when one would not start."""
    procs = Processes.attach(workdir)
    dead = [c for c in procs if not c.alive()]
    if not dead:
        say(f"the stack in {workdir} is already running:")
        say(table(procs.children))
        return 0
    say(f"the stack in {workdir} runs, but {len(dead)} part(s) died: {', '.join(c.name for c in dead)}; "
        "restarting them")
    code = 0
    for proc in dead:
        try:
            took = procs.wait_ready(procs.start(proc, wait=False), START_TIMEOUT)
            say(f"        {proc.name:<16} up again in {took:.1f} s  {proc.url}")
        except (ProcessError, OSError) as error:
            say(f"        {proc.name:<16} FAILED: {error}")
            code = 1
    procs.save()
    say(table(procs.children))
    return code


def part_state(c: Process) -> str:
    return "up" if c.ready() else ("running" if c.alive() else "down")


def describe(workdir: Path) -> dict:
    """Every part's state and doors, and where the signals go and can be read back: what
    ``stack status --json`` prints. ``traces``/``logs``: send OTLP to ``collector.otlp_http``
    (the app's OTEL_EXPORTER_OTLP_ENDPOINT); find a trace at ``traces.trace`` with its id and
    log records at ``logs.query`` (LogsQL, e.g. ``trace_id:<id>``)."""
    components, failed = load(workdir)
    parts = {c.name: {"state": part_state(c), "pid": c.pid, "url": c.url, "urls": dict(c.urls)}
             for c in components}

    def door(name: str, key: str) -> str | None:
        return parts.get(name, {}).get("urls", {}).get(key)

    return {
        "dir": str(workdir),
        "state": "up" if parts and all(p["state"] == "up" for p in parts.values()) else "degraded",
        "failed": failed,
        "parts": parts,
        "collector": {"otlp_http": door("otel-collector", "otlp_http"),
                      "otlp_grpc": door("otel-collector", "otlp_grpc")},
        "metrics": {"prometheus": [door(n, "api") for n in ("prometheus-a", "prometheus-b") if n in parts],
                    "ui": parts.get("prometheus-ui", {}).get("url"),
                    "long_term": door("victoriametrics", "query")},
        "traces": {"store": "jaeger", "state": parts.get("jaeger", {}).get("state"),
                   "query": door("jaeger", "query"), "trace": door("jaeger", "trace"),
                   "otlp_http": door("jaeger", "otlp_http"), "otlp_grpc": door("jaeger", "otlp_grpc")},
        "logs": {"store": "victorialogs", "state": parts.get("victorialogs", {}).get("state"),
                 "query": door("victorialogs", "query"), "otlp_http": door("victorialogs", "otlp_http"),
                 "ui": door("victorialogs", "ui")},
        "alerts": {"alertmanager": [parts[n]["url"] for n in ("alertmanager-a", "alertmanager-b") if n in parts],
                   "notifications": parts.get("sink", {}).get("url")},
        "app": {"demo": door("demo", "api"), "metrics": door("demo", "metrics")},
    }


def status(workdir: Path = DEFAULT_DIR, as_json: bool = False) -> int:
    workdir = workdir.resolve()
    components, _ = load(workdir)
    if not components:
        if as_json:
            say(json.dumps({"dir": str(workdir), "state": "none", "parts": {}}))
        else:
            say(f"no stack in {workdir} (`mystocks-otel stack up` starts one)")
        return 1
    if as_json:
        report = describe(workdir)
        say(json.dumps(report, indent=2))
        return 0 if report["state"] == "up" else 1
    say(table(components))
    peers = cluster_peers(components)
    say(f"Alertmanager cluster: {', '.join(f'{k} sees {v} peers' for k, v in peers.items())}")
    return 0 if all(c.ready() for c in components) else 1


def down(workdir: Path = DEFAULT_DIR) -> int:
    workdir = workdir.resolve()
    procs = Processes.attach(workdir)
    if not procs.children:
        say(f"no stack in {workdir}")
        return 0
    failed = procs.failed or not all(c.ready() for c in procs)
    for proc in reversed(procs.children):
        proc.stop()
        say(f"stopped {proc.name}")
    still = procs.still_listening()
    if still:
        procs.save()
        say(f"still listening: {', '.join(still)}")
        return 1
    procs.cleanup()
    if failed:
        procs.failed = True
        procs.save()
        say(f"something had failed: logs kept in {workdir / 'logs'}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# -- one component at a time (the live fault scenarios use these) -----------------------------

def stop_one(workdir: Path, name: str) -> Process:
    """Stop one running component (a real outage); its ports stay reserved in the state."""
    return Processes.attach(workdir.resolve()).stop(name)


def start_one(workdir: Path, name: str) -> Process:
    """Start a stopped component again, on the same ports, and wait until it is ready."""
    return Processes.attach(workdir.resolve()).start(name)
