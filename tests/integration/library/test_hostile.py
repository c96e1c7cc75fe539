"""Hostile input never explodes cardinality, memory, or the caller (a real app process)."""

from __future__ import annotations

import http.client
import json
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import PING_APP, base_env, request, run_process, scrape, series, uvicorn_argv
from support import free_port, raw_status, wait_until

pytestmark = pytest.mark.live

APP_SOURCE = Path(__file__).parent / "apps" / "hostile_app.py"
LIMIT = 100
ROUND = 20_000


@pytest.fixture(scope="module")
def app_port(tmp_path_factory):
    app_dir = tmp_path_factory.mktemp("hostile")
    shutil.copy(APP_SOURCE, app_dir / "hostile_app.py")
    port = free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_CARDINALITY_LIMIT=str(LIMIT),
                   MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("hostile_app:app", port, instrument=False), app_dir, env) as proc:
        proc.wait_port(port)
        yield port
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


class Client:
    """One keep-alive connection; thousands of requests in a few seconds."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str) -> tuple[int, bytes]:
        self.conn.request(method, path)
        response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str) -> dict:
        status, body = self.call(method, path)
        assert status == 200, body
        return json.loads(body)


def test_random_paths_make_one_404_series(app_port):
    client = Client(app_port)
    for _ in range(5_000):
        assert client.call("GET", f"/{uuid.uuid4().hex}/{uuid.uuid4().hex[:6]}")[0] == 404
    text = scrape(app_port)
    not_found = [s for s in series(text, "http_server_request_duration_seconds_count")
                 if s.labels["http_response_status_code"] == "404"]
    assert len(not_found) == 1, not_found
    assert not not_found[0].labels.get("http_route")
    assert not_found[0].value == 5_000


def test_path_params_make_series_by_template_only(app_port):
    client = Client(app_port)
    for i in range(2_500):
        assert client.call("GET", f"/sym/SYM{i}")[0] == 200
        assert client.call("GET", f"/users/{uuid.uuid4()}/portfolio")[0] == 200
    ok = [s for s in series(scrape(app_port), "http_server_request_duration_seconds_count")
          if s.labels["http_response_status_code"] == "200"]
    by_route = {s.labels["http_route"]: s.value for s in ok}
    assert by_route == {"/sym/{symbol}": 2_500, "/users/{user_id}/portfolio": 2_500}


def _total(text: str, name: str, **match) -> float:
    return sum(s.value for s in series(text, name)
               if all(s.labels.get(k) == v for k, v in match.items()))


def test_bogus_label_values_are_bounded_and_totals_kept(app_port):
    client = Client(app_port)
    client.json("POST", "/hostile/1")
    text = scrape(app_port)

    orders = series(text, "mystocks_trading_orders_total")
    assert [(s.labels["side"], s.labels["type"], s.labels["status"]) for s in orders] \
        == [("other", "other", "other")], "bounded labels collapse to 'other'"
    assert orders[0].value == ROUND

    messages = series(text, "mystocks_websocket_messages_total")
    overflow = [s for s in messages if s.labels.get("otel_metric_overflow") == "true"]
    assert len(messages) <= LIMIT + 1 and len(overflow) == 1, len(messages)
    assert sum(s.value for s in messages) == ROUND, "totals preserved across the overflow"

    http = series(text, "http_server_request_duration_seconds_count")
    assert len(http) <= LIMIT + 1
    assert any(s.labels.get("otel_metric_overflow") == "true" for s in http)

    sanitized = "mystocks_telemetry_sanitized_attributes_total"
    assert _total(text, sanitized, metric="mystocks.trading.orders",
                  reason="value_not_allowed") >= ROUND
    assert _total(text, sanitized, metric="mystocks.websocket.messages",
                  reason="overflow") >= ROUND - LIMIT


def test_memory_is_bounded_under_hostile_values(app_port):
    client = Client(app_port)
    client.json("POST", "/hostile/2")  # warm: every structure at its bound
    before = client.json("GET", "/rss")["rss"]
    after = client.json("POST", "/hostile/3")["rss"]
    scrape(app_port)
    growth_mb = (after - before) / 2**20
    assert growth_mb < 4, f"RSS grew {growth_mb:.1f} MB over {ROUND} new hostile values"


def test_garbage_never_raises_and_is_counted(app_port):
    client = Client(app_port)
    text_before = scrape(app_port)
    result = client.json("POST", "/garbage")
    assert result["raised"] == {}, result["raised"]
    text = scrape(app_port)
    dropped = "mystocks_telemetry_dropped_measurements_total"

    def grew(**match) -> bool:
        return _total(text, dropped, **match) > _total(text_before, dropped, **match)

    assert grew(metric="mystocks.trading.orders", reason="negative")
    assert grew(metric="mystocks.trading.orders", reason="nan")
    assert grew(metric="mystocks.trading.order_latency", reason="nan")
    assert grew(metric="mystocks.trading.order_latency", reason="error")
    assert grew(metric="mystocks.market_data.symbols_tracked", reason="nan")
    assert grew(reason="error")
    sanitized = "mystocks_telemetry_sanitized_attributes_total"
    assert _total(text, sanitized, metric="mystocks.trading.orders", reason="unknown_key") >= 1


def test_infinite_values_are_dropped_not_poisoning(app_port):
    """record(counter, inf) once must not make the series vanish for the life of the process."""
    client = Client(app_port)
    client.json("POST", "/infinite")
    text = scrape(app_port)
    rejected = [s for s in series(text, "mystocks_trading_orders_total")
                if s.labels["status"] == "rejected"]
    assert [s.value for s in rejected] == [3.0], "sell/stop/rejected: 1 + 1 + record_order"
    assert series(text, "mystocks_data_quality_completeness_ratio"), "last good value kept"
    dropped = "mystocks_telemetry_dropped_measurements_total"
    assert _total(text, dropped, metric="mystocks.trading.orders") >= 1
    assert _total(text, dropped, metric="mystocks.trading.order_latency") >= 1


# -- issue 6: a host that is not ours, and every door locked (real uvicorn processes) --------

TOKEN = "s3cr\u00e9t-t0ken"  # non-ASCII: clients send its UTF-8 bytes
GOOD_HEADERS = {b"Bearer " + TOKEN.encode(), b"bearer " + TOKEN.encode()}

HOST_APP = '''
from fastapi import Depends, FastAPI, Header, HTTPException


def require_api_key(x_api_key: str | None = Header(default=None)):
    if x_api_key != "k":
        raise HTTPException(status_code=403, detail="no key")


app = FastAPI(generate_unique_id_function=lambda route: f"{route.tags[0]}-{route.name}",
              dependencies=[Depends(require_api_key)])
sub = FastAPI()


@sub.get("/things/{thing_id}", tags=["things"])
def thing(thing_id: int):
    return {"id": thing_id}


app.mount("/v2", sub)


@app.get("/orders/{order_id}", tags=["orders"])
def order(order_id: int):
    return {"id": order_id}


@app.get("/metrics", tags=["ops"])
def own_metrics():
    return {"own": True}
'''

def raw_status_of(port: int, authorization: bytes, path: bytes = b"/metrics") -> int | None:
    """A GET whose Authorization header is written byte for byte."""
    return raw_status(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      + authorization + b"\r\nConnection: close\r\n\r\n")


@pytest.fixture(scope="module")
def host_app(tmp_path_factory):
    """HOST_APP under opentelemetry-instrument (set-up runs before the routes exist), and bare."""
    app_dir = tmp_path_factory.mktemp("host")
    (app_dir / "host_app.py").write_text(HOST_APP)
    ports = {"instrumented": free_port(), "bare": free_port()}
    env = base_env(app_dir, MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("host_app:app", ports["instrumented"]), app_dir, env) as proc, \
            run_process(uvicorn_argv("host_app:app", ports["bare"], instrument=False), app_dir, env) as bare:
        proc.wait_port(ports["instrumented"])
        bare.wait_port(ports["bare"])
        yield ports, proc
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_host_with_tag_ids_global_auth_and_own_metrics_is_unchanged(host_app):
    ports, proc = host_app
    key = {"X-API-Key": "k"}
    for path, headers in (("/openapi.json", key), ("/orders/3", key), ("/orders/3", {}),
                          ("/metrics", key), ("/metrics", {}), ("/v2/things/1", {}), ("/nope", key)):
        ours = request(ports["instrumented"], path, headers)
        bare = request(ports["bare"], path, headers)
        assert ours == bare, (path, headers, ours, bare)  # status and bytes, OpenAPI included
    assert request(ports["instrumented"], "/metrics", key) == (200, b'{"own":true}')
    # ours moved aside together, and the host's global dependency does not guard them
    assert request(ports["instrumented"], "/_otel/metrics/health")[0] == 200
    assert request(ports["instrumented"], "/_otel/metrics/list")[0] == 200
    moved = [line for line in proc.output().splitlines() if "moved to /_otel/metrics" in line]
    assert len(moved) == 1, proc.output()[-2000:]


def test_a_mounted_sub_app_is_counted_once_with_the_full_template(host_app):
    ports, _ = host_app
    port = ports["instrumented"]
    for i in range(7):
        assert request(port, f"/v2/things/{i}")[0] == 200
    assert request(port, "/v2/metrics")[0] == 404  # the sub-app serves no stray endpoints
    status, body = request(port, "/_otel/metrics")
    assert status == 200
    routes = {s.labels.get("http_route"): s.value
              for s in series(body.decode(), "http_server_request_duration_seconds_count")
              if s.labels["http_response_status_code"] == "200"}
    assert routes["/v2/things/{thing_id}"] >= 7
    assert "/things/{thing_id}" not in routes  # no second, partial count from the sub-app


@pytest.fixture(scope="module")
def locked_app(tmp_path_factory):
    """Token set, standalone port set (default host), and an OTLP endpoint that refuses."""
    app_dir = tmp_path_factory.mktemp("locked")
    (app_dir / "locked_app.py").write_text(PING_APP)
    port, metrics_port, dead = free_port(), free_port(), free_port()
    env = base_env(app_dir, MYSTOCKS_OTEL_METRICS_TOKEN=TOKEN,
                   OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
                   OTEL_METRICS_EXPORTER="prometheus,otlp", OTEL_METRIC_EXPORT_INTERVAL="200",
                   OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"http://127.0.0.1:{dead}/v1/metrics",
                   OTEL_EXPORTER_OTLP_METRICS_TIMEOUT="1", MYSTOCKS_OTEL_SYSTEM_METRICS="false")
    with run_process(uvicorn_argv("locked_app:app", port, instrument=False), app_dir, env) as proc:
        proc.wait_port(port)
        proc.wait_port(metrics_port)
        yield {"app": port, "metrics": metrics_port, "proc": proc}
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_the_standalone_port_binds_localhost_and_demands_the_token(locked_app):
    import psutil

    listening = [c.laddr for c in psutil.Process(locked_app["proc"].proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == locked_app["metrics"]]
    assert listening and all(addr.ip in ("127.0.0.1", "::1") for addr in listening), listening
    wire = {"Authorization": "Bearer " + TOKEN.encode().decode("latin-1")}
    for door in ("app", "metrics"):
        assert request(locked_app[door], "/metrics")[0] == 401, door
        status, body = request(locked_app[door], "/metrics", wire)
        assert status == 200 and b"target_info" in body, door
        assert request(locked_app[door], "/metrics/health")[0] == 200, door  # probes stay open
        assert request(locked_app[door], "/metrics/list")[0] == 200, door


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda b: b"Bearer " + b, st.binary(max_size=64)),
    st.builds(lambda t: ("Bearer " + t).encode("utf-8", "surrogatepass"), st.text(max_size=40)),
    st.sampled_from([b"", b"Bearer", b"Bearer s3cr\xe9t-t0ken", b"Bearer " + b"A" * 20_000,
                     *GOOD_HEADERS]),
))
def test_fuzzed_authorization_never_gets_a_500_on_either_door(locked_app, value):
    for door in ("app", "metrics"):
        status = raw_status_of(locked_app[door], value)
        allowed = (200,) if value in GOOD_HEADERS else (400, 401, 431)
        assert status in allowed, (door, value, status)


def test_a_dead_otlp_endpoint_turns_health_degraded_and_requests_keep_working(locked_app):
    def degraded():
        assert request(locked_app["app"], "/ping") == (200, b'"pong"')
        status, body = request(locked_app["app"], "/metrics/health")
        assert status == 200
        report = json.loads(body)
        otlp = report["reader_states"]["otlp"]
        return report if report["status"] == "degraded" and otlp["consecutive_failures"] >= 2 else None

    report = wait_until(degraded, timeout=60, what="health degraded by the dead Collector")
    otlp = report["reader_states"]["otlp"]
    assert otlp["state"] == "failing" and otlp["last_success"] is None
    assert "refused" in otlp["last_error"] or "Connection" in otlp["last_error"], otlp
    status, body = request(locked_app["metrics"], "/metrics",
                           {"Authorization": "Bearer " + TOKEN.encode().decode("latin-1")})
    failures = series(body.decode(), "mystocks_telemetry_export_failures_total")
    assert status == 200 and failures and failures[0].value >= 2


ROOT_PATH_APP = '''
from fastapi import APIRouter, Depends, FastAPI, Header
import mystocks_otel


def tenant(x_tenant: str = Header(default="t")):
    return x_tenant


app = FastAPI()
mystocks_otel.setup_telemetry(app)
orders = APIRouter(dependencies=[Depends(tenant)])


@orders.get("/{order_id}")
def order(order_id: int):
    return {"id": order_id}


app.include_router(orders, prefix="/orders")
'''


def test_root_path_deployments_keep_route_templates(tmp_path):
    """Behind a proxy that strips /gateway: uvicorn --root-path /gateway gets /orders/1 and
    hands the app path /gateway/orders/1 with root_path /gateway."""
    (tmp_path / "root_app.py").write_text(ROOT_PATH_APP)
    port = free_port()
    argv = uvicorn_argv("root_app:app", port, "--root-path", "/gateway", instrument=False)
    with run_process(argv, tmp_path, base_env(tmp_path, MYSTOCKS_OTEL_SYSTEM_METRICS="false")) as proc:
        proc.wait_port(port)
        for i in range(4):
            assert request(port, f"/orders/{i}")[0] == 200
        status, body = request(port, "/metrics")
        assert status == 200, body
        routes = {s.labels.get("http_route"): s.value
                  for s in series(body.decode(), "http_server_request_duration_seconds_count")}
        # the application root is part of the template (semantic conventions); /metrics is not measured
        assert routes == {"/gateway/orders/{order_id}": 4}, routes
        assert "Traceback" not in proc.output()
