"""Tail sampling in the process (mystocks_otel/_internal/sampling.py): a trace is decided when
its local root ends; errors, 5xx, slow traces and keep-routes are always kept, a ratio of the
rest by trace id; buffers are bounded and drops counted; an exemplar is only ever kept from a
kept trace (the ASGI layer's server span, through setup_telemetry)."""

from __future__ import annotations

import time

from core_helpers import run_scenario
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from mystocks_otel._internal.sampling import Policy, TailSampler


def pipeline(policy: Policy, **bounds):
    exporter = InMemorySpanExporter()
    drops: list[tuple[str, int]] = []
    sampler = TailSampler(SimpleSpanProcessor(exporter), policy,
                          count=lambda reason, n: drops.append((reason, n)), **bounds)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    return provider.get_tracer("t"), sampler, exporter, drops


def request(tracer, *, status=200, route="/api/quotes/{symbol}", method="GET", fail_child=False,
            seconds=0.0, children=2):
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_attributes({"http.request.method": method, "http.route": route,
                             "http.response.status_code": status})
        for i in range(children):
            with tracer.start_as_current_span(f"child{i}") as child:
                if fail_child and i == 0:
                    child.set_status(Status(StatusCode.ERROR))
        if seconds:
            time.sleep(seconds)
    return root.get_span_context().trace_id


def exported(exporter, trace_id):
    return [s.name for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def test_ordinary_traces_are_dropped_whole_at_ratio_zero_and_kept_whole_at_one():
    tracer, _, exporter, _ = pipeline(Policy(ratio=0.0, keep_routes=""))
    dropped = request(tracer)
    assert exported(exporter, dropped) == []
    tracer, _, exporter, _ = pipeline(Policy(ratio=1.0, keep_routes=""))
    kept = request(tracer)
    assert sorted(exported(exporter, kept)) == ["child0", "child1", "root"]


def test_errors_5xx_slow_traces_and_keep_routes_are_always_kept():
    tracer, sampler, exporter, _ = pipeline(Policy(ratio=0.0, slow_seconds=0.05,
                                                   keep_routes=r"^POST /api/orders"))
    failed_child = request(tracer, fail_child=True)
    server_error = request(tracer, status=503)
    slow = request(tracer, seconds=0.08)
    order = request(tracer, method="POST", route="/api/orders")
    ordinary = request(tracer)
    not_an_order = request(tracer, method="GET", route="/api/orders")
    client_error = request(tracer, status=404)
    for trace_id in (failed_child, server_error, slow, order):
        assert sorted(exported(exporter, trace_id)) == ["child0", "child1", "root"]
    for trace_id in (ordinary, not_an_order, client_error):
        assert exported(exporter, trace_id) == []
    assert sampler.in_flight() == 0


def test_the_ratio_is_the_sdks_trace_id_ratio_rule_so_every_process_agrees():
    policy = Policy(ratio=0.25)
    head = TraceIdRatioBased(0.25)
    ids = [int.from_bytes(bytes([i, 7, 3, i * 5 % 256] * 4), "big") for i in range(256)]
    ours = [policy.by_ratio(i) for i in ids]
    sdk = [head.should_sample(None, i, "x").decision.is_sampled() for i in ids]
    assert ours == sdk and 0 < sum(ours) < len(ids)


def test_a_span_ending_after_its_root_follows_the_decision():
    tracer, _, exporter, _ = pipeline(Policy(ratio=1.0))
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    from opentelemetry import trace

    late = tracer.start_span("background", context=trace.set_span_in_context(root))
    root.end()
    late.end()
    assert sorted(exported(exporter, root.get_span_context().trace_id)) == ["background", "root"]


def test_buffers_are_bounded_and_drops_counted():
    tracer, sampler, exporter, drops = pipeline(Policy(ratio=1.0), max_traces=2, max_spans=3)
    long_trace = request(tracer, children=5)  # 5 children, 3 buffered
    assert sorted(exported(exporter, long_trace)) == ["child0", "child1", "child2", "root"]
    assert ("trace_too_long", 2) in drops
    from opentelemetry import trace

    roots = [tracer.start_span(f"r{i}", kind=SpanKind.SERVER) for i in range(2)]
    child = tracer.start_span("c", context=trace.set_span_in_context(roots[0]))
    child.end()  # buffered in the oldest trace, which a third one pushes out
    roots.append(tracer.start_span("r2", kind=SpanKind.SERVER))
    assert sampler.in_flight() == 2 and ("buffer_full", 1) in drops
    late = tracer.start_span("late", context=trace.set_span_in_context(roots[0]))
    for span in (late, *roots):
        span.end()
    assert drops.count(("buffer_full", 1)) == 3  # the late child and the root of the given-up trace
    assert exported(exporter, roots[0].get_span_context().trace_id) == []  # given up whole
    assert exported(exporter, roots[2].get_span_context().trace_id) == ["r2"]


def test_exemplar_candidates_are_committed_only_for_kept_traces():
    tracer, sampler, _, _ = pipeline(Policy(ratio=0.0))
    committed = []
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as ok:
        trace_id = ok.get_span_context().trace_id
        assert sampler.exemplar_gate(trace_id, lambda: committed.append("ok")) is False
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as bad:
        bad.set_status(Status(StatusCode.ERROR))
        bad_id = bad.get_span_context().trace_id
        assert sampler.exemplar_gate(bad_id, lambda: committed.append("bad")) is False
    assert committed == ["bad"]
    assert sampler.exemplar_gate(bad_id, lambda: None) is True  # decided: kept
    assert sampler.exemplar_gate(trace_id, lambda: None) is False  # decided: dropped


SCENARIO = """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    from mystocks_otel import config
    from mystocks_otel._internal.telemetry import build_tracer_provider

    settings = config.load().with_overrides(traces_keep_ratio=0.0)
    exporter = InMemorySpanExporter()
    tp = build_tracer_provider(settings, exporter=exporter)
    app = make_app(); setup_telemetry(app, tracer_provider=tp, traces_keep_ratio=0.0)
    client = TestClient(app, raise_server_exceptions=False)
    for i in range(20):
        client.get(f"/api/quotes/S{i}")
    statuses = [client.get("/boom").status_code for _ in range(3)]
    tp.force_flush()
    page = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    exemplars = [(s.labels.get("http_route"), s.exemplar.labels["trace_id"])
                 for f in text_string_to_metric_families(page.text) for s in f.samples
                 if s.exemplar is not None and f.name == "http_server_request_duration_seconds"]
    spans = [(s.name, format(s.context.trace_id, "032x"), s.kind == SpanKind.SERVER)
             for s in exporter.get_finished_spans()]
    done(exemplars=exemplars, spans=spans, statuses=statuses)
"""


def test_exemplars_only_point_at_kept_traces_of_the_asgi_layers_server_spans():
    result = run_scenario(SCENARIO)
    assert result["statuses"] == [500] * 3
    stored = {trace_id for _, trace_id, _ in result["spans"]}
    servers = [name for name, _, server in result["spans"] if server]
    assert servers == ["GET /boom"] * 3  # the 20 ordinary requests were dropped (ratio 0)
    assert result["exemplars"], "the failing requests' exemplar is missing"
    for route, trace_id in result["exemplars"]:
        assert route == "/boom" and trace_id.rjust(32, "0") in stored


REMOTE = """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from mystocks_otel import config
    from mystocks_otel._internal.telemetry import build_tracer_provider

    exporter = InMemorySpanExporter()
    tp = build_tracer_provider(config.load().with_overrides(traces_keep_ratio=1.0), exporter=exporter)
    app = make_app(); setup_telemetry(app, tracer_provider=tp)
    client = TestClient(app)
    client.get("/api/quotes/A", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    client.get("/api/quotes/B")
    tp.force_flush()
    done(spans=[(s.name, format(s.context.trace_id, "032x"),
                 format(s.parent.span_id, "016x") if s.parent else None,
                 bool(s.parent and s.parent.is_remote), dict(s.attributes))
                for s in exporter.get_finished_spans()])
"""


def test_the_server_span_continues_a_remote_parent_and_carries_the_semantic_conventions():
    (first, second) = run_scenario(REMOTE)["spans"]
    name, trace_id, parent, remote, attributes = first
    assert (name, trace_id, parent, remote) == ("GET /api/quotes/{symbol}",
                                               "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)
    assert {k: attributes[k] for k in ("http.request.method", "http.route", "url.path",
                                       "http.response.status_code", "url.scheme")} == {
        "http.request.method": "GET", "http.route": "/api/quotes/{symbol}", "url.path": "/api/quotes/A",
        "http.response.status_code": 200, "url.scheme": "http"}
    assert second[1] != trace_id and second[2] is None  # no header: a new trace, a local root


BROKEN = """
    from opentelemetry.sdk.trace import TracerProvider

    class BrokenTracer:
        def start_span(self, *args, **kwargs):
            raise RuntimeError("a broken SDK")

    class BrokenProvider(TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return BrokenTracer()

    app = make_app(); setup_telemetry(app, tracer_provider=BrokenProvider())
    client = TestClient(app)
    statuses = [client.get("/api/quotes/A").status_code for _ in range(2)]
    page = client.get("/metrics").text
    done(statuses=statuses, counted='http_route="/api/quotes/{symbol}"' in page)
"""


def test_a_failing_tracer_never_fails_the_request_and_it_is_still_measured():
    result = run_scenario(BROKEN)
    assert result == {"statuses": [200, 200], "counted": True}
