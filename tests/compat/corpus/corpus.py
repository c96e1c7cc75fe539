"""Run one corpus app in one mode against a real uvicorn, and keep what happened.

A *mode* is how the app is started:

- ``bare``: ``uvicorn module:app``, no telemetry at all;
- ``oneline``: ``uvicorn`` on a two-line wrapper that imports the app and calls
  ``mystocks_otel.setup_telemetry(app)`` (for a factory, the wrapper wraps the factory);
- ``distro``: ``opentelemetry-instrument uvicorn module:app``, zero code.

Each app module in ``apps/`` declares:

- ``check(client)``: the app's own assertions, made with an ``httpx.Client`` on the server;
- ``ROUTES``: for every request the check makes, the ``http_route`` template we expect
  (``None`` when no route matches; a tuple when several low-cardinality forms are
  acceptable), keyed by ``"METHOD /path STATUS"``, ``"METHOD /path"`` or ``"/path"``
  (the most specific key wins);
- optionally ``TARGET`` (default ``<module>:app``), ``FACTORY``, ``UVICORN_ARGS``,
  ``ROOT_PATH``, ``VOLATILE_HEADERS``, ``VOLATILE_BODIES`` (paths whose body the check
  asserts on itself), ``STANDALONE`` (the host routes every path: instrumented runs set
  ``OTEL_EXPORTER_PROMETHEUS_PORT`` and read our endpoints there), ``check_log(output)``
  and ``check_metrics(samples)`` (our exposition, instrumented modes).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import httpx

from harness import base_env, run_process, samples, uvicorn_argv  # noqa: E402
from support import free_port, wait_until  # noqa: E402

APPS_DIR = Path(__file__).resolve().parent / "apps"
MODES = ("bare", "oneline", "distro")
INSTRUMENTED = ("oneline", "distro")
DEFAULT_PREFIX = "/metrics"  # MYSTOCKS_OTEL_METRICS_PATH's default
DURATION = "http_server_request_duration_seconds_count"
ACTIVE = "http_server_active_requests"
ALWAYS_VOLATILE = frozenset({"date"})


def app_names() -> list[str]:
    return sorted(p.stem for p in APPS_DIR.glob("*.py") if not p.stem.startswith("_"))


@functools.cache
def load_app(name: str) -> ModuleType:
    """Import an app module once, under a private name (never as a top-level module).

    Its import-time deprecation warnings (``FastAPI(root_path=...)``) belong to the pattern
    the app stands for, not to this test process: the server processes still show them.
    """
    spec = importlib.util.spec_from_file_location(f"compat_app_{name}", APPS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Exchange:
    """One request and its response, with the volatile headers blanked out."""

    method: str
    target: str  # path and query, as the client sent them
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def __str__(self) -> str:
        return (f"{self.method} {self.target} -> {self.status} {dict(self.headers)} "
                f"{self.body[:300]!r}")


def recording_client(base_url: str, transcript: list[Exchange], volatile: frozenset[str],
                     volatile_bodies: frozenset[str] = frozenset()):
    """An ``httpx.Client`` that appends every exchange it makes to ``transcript``.

    The server's address (its port changes from run to run) reads ``SERVER`` in headers
    and bodies, so absolute URLs (redirects, ``url_for``) compare across modes. The bodies
    of ``volatile_bodies`` paths (and their length) are left out: the check asserts on them.
    """
    address = base_url.removeprefix("http://")

    def record(response: httpx.Response) -> None:
        response.read()
        request = response.request
        target = request.url.raw_path.decode("ascii")
        blank = volatile | ({"content-length"} if request.url.path in volatile_bodies else set())
        headers = tuple(sorted(
            (name, "<volatile>" if name in blank else value.replace(address, "SERVER"))
            for name, value in response.headers.multi_items()))
        body = response.content.replace(address.encode(), b"SERVER")
        if request.url.path in volatile_bodies:
            body = b"<volatile>"
        transcript.append(Exchange(request.method, target, response.status_code, headers, body))

    return httpx.Client(base_url=base_url, timeout=15.0, follow_redirects=False,
                        event_hooks={"response": [record]})


@dataclass
class Run:
    """What one (app, mode) run produced."""

    app: str
    mode: str
    transcript: list[Exchange] = field(default_factory=list)
    check_error: str | None = None
    start_error: str | None = None
    openapi: bytes | None = None
    prefix: str | None = None  # where our endpoints answered (instrumented modes)
    ours_url: str | None = None  # the server they answered on (app's port or standalone)
    prefix_error: str | None = None
    # our endpoints as probed: path -> (status, content type, body)
    ours: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    metrics: str | None = None
    log: str = ""


def wrapper_source(module: ModuleType, name: str) -> tuple[str, str]:
    """The one line, as a user writes it: ``(module source, uvicorn target)``."""
    target = getattr(module, "TARGET", f"{name}:app")
    app_module, attribute = target.split(":")
    if getattr(module, "FACTORY", False):
        source = (f"import mystocks_otel\nfrom {app_module} import {attribute} as _factory\n\n\n"
                  f"def {attribute}():\n    app = _factory()\n"
                  f"    mystocks_otel.setup_telemetry(app)\n    return app\n")
    else:
        source = (f"import mystocks_otel\nfrom {app_module} import {attribute}\n\n"
                  f"mystocks_otel.setup_telemetry({attribute})\n")
    return source, f"oneline_{name}:{attribute}"


def command(module: ModuleType, name: str, mode: str, workdir: Path, port: int) -> list[str]:
    target = getattr(module, "TARGET", f"{name}:app")
    if mode == "oneline":
        source, target = wrapper_source(module, name)
        (workdir / f"oneline_{name}.py").write_text(source)
    extra = list(getattr(module, "UVICORN_ARGS", ()))
    if getattr(module, "FACTORY", False):
        extra.append("--factory")
    return uvicorn_argv(target, port, *extra, instrument=mode == "distro")


def run_app(name: str, mode: str, workdir: Path) -> Run:
    """Start ``name`` in ``mode``, run its check and our probes against it, stop it."""
    module = load_app(name)
    result = Run(name, mode)
    port = free_port()
    env = base_env(workdir, MYSTOCKS_OTEL_SYSTEM_METRICS="false", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = f"{workdir}:{APPS_DIR}"
    result.ours_url = f"http://127.0.0.1:{port}"
    if getattr(module, "STANDALONE", False) and mode in INSTRUMENTED:
        metrics_port = free_port()
        env.update(OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
                   OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1")
        result.ours_url = f"http://127.0.0.1:{metrics_port}"
    proc = None
    try:
        with run_process(command(module, name, mode, workdir, port), workdir, env) as proc:
            try:
                proc.wait_port(port)
                proc.wait_port(int(result.ours_url.rsplit(":", 1)[1]))
            except AssertionError as error:
                result.start_error = str(error)
                return result
            exercise(module, result, f"http://127.0.0.1:{port}", proc.output)
    finally:
        if proc is not None:
            result.log = proc.output()
    return result


def exercise(module: ModuleType, result: Run, base_url: str, server_output) -> None:
    """The app's own check, then /openapi.json, then our endpoints and exposition."""
    volatile = ALWAYS_VOLATILE | {h.lower() for h in getattr(module, "VOLATILE_HEADERS", ())}
    volatile_bodies = frozenset(getattr(module, "VOLATILE_BODIES", ()))
    client_for = functools.partial(recording_client, base_url, result.transcript, volatile,
                                   volatile_bodies)
    with client_for() as client:
        try:
            module.check(client)
        except Exception:  # noqa: BLE001 - reported by the test that reads the run
            last = result.transcript[-1] if result.transcript else "none"
            result.check_error = f"{traceback.format_exc()}last exchange: {last}"
    # Fresh connections from here on: a failed check may have left a broken one.
    try:
        with client_for() as client:
            result.openapi = client.get("/openapi.json").content
        with httpx.Client(base_url=result.ours_url, timeout=15.0) as plain:
            probe_ours(plain, module, result, server_output())
            if result.mode in INSTRUMENTED and result.prefix is not None:
                result.metrics = settled_metrics(plain, module, result)
    except httpx.HTTPError as error:
        result.prefix_error = result.prefix_error or f"after the check: {error!r}"


# --- where our endpoints are ---------------------------------------------------------------


def host_paths(module: ModuleType) -> set[str]:
    return {key.split()[1] if " " in key else key for key in module.ROUTES}


def announced_prefixes(log: str) -> list[str]:
    """Paths named by our start-up lines (the warning that says where the endpoints went)."""
    found = []
    for line in log.splitlines():
        if "mystocks" not in line.lower():
            continue
        for path in re.findall(r"(/[A-Za-z0-9_.~\-/]*[A-Za-z0-9_~\-])", line):
            for suffix in ("/health", "/list"):
                path = path.removesuffix(suffix)
            if path not in found:
                found.append(path)
    return found


def probe_ours(client: httpx.Client, module: ModuleType, result: Run, log: str) -> None:
    """Find our endpoints: at the default prefix unless the host serves it, else announced."""
    standalone = getattr(module, "STANDALONE", False)  # ours on their own port: the default
    if result.mode != "bare" and DEFAULT_PREFIX in host_paths(module) and not standalone:
        candidates = [p for p in announced_prefixes(log) if p != DEFAULT_PREFIX]
    else:
        candidates = [DEFAULT_PREFIX]
    for prefix in candidates:
        answers = {}
        for path in (prefix, f"{prefix}/health", f"{prefix}/list"):
            response = client.get(path)
            answers[path] = (response.status_code, response.headers.get("content-type", ""),
                             response.content)
        result.ours = answers
        if result.mode == "bare" or answers[prefix][0] == 200:
            result.prefix = prefix
            return
    if candidates:
        result.prefix_error = f"our endpoints did not answer 200 at {candidates}: " + ", ".join(
            f"{p} -> {s} {b[:200]!r}" for p, (s, _, b) in result.ours.items())
    else:
        result.prefix_error = ("the host serves /metrics and no start-up line from mystocks-otel "
                               "names another prefix for our endpoints")


# --- what the metrics must say -------------------------------------------------------------


def expected_routes(module: ModuleType, transcript: list[Exchange]) -> list[tuple]:
    """``(templates, method, status)`` for every request of the transcript, in order.

    Every request the check made counts, the host's own ``/metrics`` included: the default
    excluded URLs leave out our endpoints wherever they are (and health probes, a path none
    of the apps uses), not the host's routes.
    """
    root = getattr(module, "ROOT_PATH", "")
    routes = {**module.ROUTES, "/openapi.json": f"{root}/openapi.json"}
    expected = []
    for exchange in transcript:
        keys = (f"{exchange.method} {exchange.path} {exchange.status}",
                f"{exchange.method} {exchange.path}", exchange.path)
        key = next((k for k in keys if k in routes), None)
        if key is None:
            raise AssertionError(f"{keys[0]} is made by check() but missing from ROUTES")
        template = routes[key]
        templates = template if isinstance(template, tuple) else (template,)
        expected.append((templates, exchange.method, str(exchange.status)))
    return expected


def ours_routes(module: ModuleType, prefix: str) -> set[str]:
    root = getattr(module, "ROOT_PATH", "")
    paths = {prefix, f"{prefix}/health", f"{prefix}/list"} - host_paths(module)
    return paths | {root + p for p in paths}


def observed_counts(text: str, module: ModuleType, prefix: str) -> Counter:
    """``(route, method, status) -> count`` from our exposition, our own endpoints left out."""
    ours = ours_routes(module, prefix)
    counts = Counter()
    for sample in samples(text):
        if sample.name != DURATION:
            continue
        route = sample.labels.get("http_route") or None
        if route in ours:
            continue
        key = (route, sample.labels.get("http_request_method"),
               sample.labels.get("http_response_status_code"))
        counts[key] += int(sample.value)
    return counts


def resolve(expected: list[tuple], observed: Counter) -> Counter:
    """Pick, for each set of acceptable templates, the one the product used.

    Requests with one possible template are placed first; a request with several takes a
    template that still has observed counts left over, else its first one.
    """
    counts, left = Counter(), Counter(observed)
    for templates, method, status in sorted(expected, key=lambda e: len(e[0])):
        used = next((t for t in templates if left[(t, method, status)] > 0), templates[0])
        counts[(used, method, status)] += 1
        left[(used, method, status)] -= 1
    return counts


def settled_metrics(client: httpx.Client, module: ModuleType, result: Run) -> str | None:
    """Our exposition once every request has been recorded (bounded wait).

    A request is recorded when its ASGI call returns, which can be just after the client
    has read the response (background tasks run in between): poll until it settles.
    """
    try:
        expected = expected_routes(module, result.transcript)
    except AssertionError:
        expected = []
    seen = {"text": None, "status": 200, "previous": None, "since": time.monotonic()}

    def settled() -> bool:
        response = client.get(result.prefix)
        seen["status"] = response.status_code
        if response.status_code != 200:
            return True
        seen["text"] = text = response.text
        observed = observed_counts(text, module, result.prefix)
        if resolve(expected, observed) == observed:
            return True
        if observed != seen["previous"]:
            seen["previous"], seen["since"] = observed, time.monotonic()
            return False
        return time.monotonic() - seen["since"] > 2.0  # settled on other counts: the test reports them

    try:
        wait_until(settled, 8.0, "our exposition to settle", interval=0.1)
    except AssertionError:
        pass  # the counts at the deadline: the test reports the difference
    return seen["text"] if seen["status"] == 200 else None
