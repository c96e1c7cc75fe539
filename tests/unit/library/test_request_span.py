"""The lean request span (mystocks_otel/_internal/request_span.py): to the app, and to the
exporter, it is the span the SDK would have made.

Each scenario runs the same app twice in fresh processes: once on the lean path (our provider,
our tail sampler its only processor), once forced onto the SDK's own spans (a second span
processor on the provider). What the app sees during the request and what is exported must be
the same, the SDK's limits, cleaning and warnings included; the configured sampler decides as
it does for SDK spans.
"""

from __future__ import annotations

import pytest
from core_helpers import run_scenario

#: Every two-mode scenario starts so: our provider (keep ratio 1), forced onto the SDK's spans
#: when MODE is "sdk"; the SDK's warnings collected in ``warnings_seen``.
PROVIDER = """
    import logging
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode
    from mystocks_otel import config
    from mystocks_otel._internal.telemetry import build_tracer_provider

    warnings_seen = []

    class Seen(logging.Handler):
        def emit(self, record):
            warnings_seen.append(record.getMessage())

    logging.getLogger("opentelemetry").addHandler(Seen(level=logging.WARNING))
    exporter = InMemorySpanExporter()
    tp = build_tracer_provider(config.load().with_overrides(traces_keep_ratio=1.0), exporter=exporter)
    if MODE == "sdk":  # anyone else's processor on the provider: the SDK's spans, as before
        tp.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
"""

APP = PROVIDER + """
    app = make_app()
    seen = {}

    def work(kind):
        span = trace.get_current_span()
        seen[kind] = {"recording": span.is_recording(), "readable": isinstance(span, ReadableSpan),
                      "sampled": span.get_span_context().trace_flags.sampled}
        span.set_attribute("app.tier", "gold")
        span.set_attributes({"app.items": 3, "app.tags": ["a", "b"]})
        span.set_attribute("", "an empty key")  # the SDK drops it, with a warning
        span.set_attribute("app.map", {"a": 1})
        span.add_event("cache.miss", {"key": "AAPL"})
        try:
            raise KeyError("AAPL")
        except KeyError as exc:
            span.record_exception(exc, attributes={"handled": True})
        with tp.get_tracer("app").start_as_current_span("load quote"):
            pass
        return {"ok": True}

    @app.get("/async-work")
    async def async_work():
        return work("async")

    @app.get("/sync-work")
    def sync_work():  # runs in a worker thread, with the request's context
        return work("sync")

    @app.get("/many")
    def many():
        span = trace.get_current_span()
        for i in range(200):
            span.set_attribute(f"app.a{i}", i)
        return {}

    @app.get("/status-ok-then-5xx")
    def ok_then_error():
        trace.get_current_span().set_status(Status(StatusCode.OK))
        return {}

    @app.get("/renamed")
    def renamed():
        trace.get_current_span().update_name("custom name")
        return {}

    setup_telemetry(app, tracer_provider=tp)
    client = TestClient(app)
    for path in ("/async-work", "/sync-work", "/many", "/status-ok-then-5xx", "/renamed"):
        assert client.get(path).status_code == 200
    tp.force_flush()

    def ids(context):
        return None if context is None else (format(context.trace_id, "032x"), format(context.span_id, "016x"))

    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    def otlp(span):  # what the OTLP exporter sends, without ids and times
        message = MessageToDict(encode_spans([span]))
        (resource_spans,) = message["resourceSpans"]
        (scope_spans,) = resource_spans["scopeSpans"]
        (encoded,) = scope_spans["spans"]
        for key in ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano"):
            encoded.pop(key, None)
        for event in encoded.get("events", []):
            event.pop("timeUnixNano", None)
            event["attributes"] = [a for a in event.get("attributes", [])
                                   if a["key"] != "exception.stacktrace"]
        resource = [a for a in resource_spans["resource"]["attributes"]
                    if a["key"] != "service.instance.id"]  # one per process: compared within it below
        return {"span": encoded, "scope": scope_spans["scope"], "resource": resource,
                "instance": dict(span.resource.attributes).get("service.instance.id")}

    spans = []
    for s in exporter.get_finished_spans():
        events = [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"},
                   "exception.stacktrace" in e.attributes) for e in s.events]
        spans.append({"name": s.name, "kind": str(s.kind), "attributes": {k: list(v) if isinstance(v, tuple) else v
                                                                          for k, v in s.attributes.items()},
                      "events": events, "status": str(s.status.status_code), "ids": ids(s.context),
                      "parent": ids(s.parent), "dropped": s.dropped_attributes, "scope": s.instrumentation_scope.name,
                      "resource": dict(s.resource.attributes).get("service.name"),
                      "duration_ok": s.end_time >= s.start_time > 0, "otlp": otlp(s)})
    done(spans=spans, seen=seen, warnings=sorted(set(warnings_seen)))
"""


def _run(mode: str, env: dict | None = None, scenario: str = APP) -> dict:
    return run_scenario(f"    MODE = {mode!r}\n" + scenario, env=env)


def _by_name(spans):
    return {span["name"]: span for span in spans}


def _comparable(spans):
    """The spans without their random ids, children pointing at their parent by name."""
    names = {tuple(s["ids"]): s["name"] for s in spans}
    out = []
    for span in spans:
        copy = {k: v for k, v in span.items() if k not in ("ids", "parent")}
        copy["otlp"] = {k: v for k, v in span["otlp"].items() if k != "instance"}
        copy["parent"] = names.get(tuple(span["parent"])) if span["parent"] else None
        out.append(copy)
    return sorted(out, key=lambda s: (s["name"], str(s["attributes"])))


@pytest.fixture(scope="module")
def runs():
    return {"lean": _run("lean"), "sdk": _run("sdk")}


def test_the_app_sees_a_recording_sampled_span_in_async_and_sync_endpoints(runs):
    for mode, result in runs.items():
        assert result["seen"] == {kind: {"recording": True, "readable": True, "sampled": True}
                                  for kind in ("async", "sync")}, mode


def test_what_the_app_records_is_exported_as_the_sdk_exports_it(runs):
    lean, sdk = _comparable(runs["lean"]["spans"]), _comparable(runs["sdk"]["spans"])
    assert lean == sdk
    spans = _by_name(runs["lean"]["spans"])
    work = spans["GET /async-work"]
    assert work["attributes"]["app.tier"] == "gold" and work["attributes"]["app.items"] == 3
    assert work["attributes"]["app.tags"] == ["a", "b"] and "" not in work["attributes"]
    assert work["attributes"]["app.map"] == {"a": 1}
    assert work["attributes"]["http.route"] == "/async-work"
    assert work["attributes"]["http.response.status_code"] == 200
    assert [name for name, _, _ in work["events"]] == ["cache.miss", "exception"]
    assert work["events"][1][1]["exception.type"] == "KeyError" and work["events"][1][2]
    assert work["kind"] == "SpanKind.SERVER" and work["duration_ok"]
    assert work["scope"] == "mystocks_otel.http"
    assert work["otlp"]["span"]["kind"] == "SPAN_KIND_SERVER"  # the OTLP encoder takes it as is
    # the request span carries the provider's resource, the one its children carry
    assert len({span["otlp"]["instance"] for span in runs["lean"]["spans"]}) == 1


def test_children_join_the_request_span(runs):
    spans = runs["lean"]["spans"]
    servers = {tuple(s["ids"]): s for s in spans if s["kind"] == "SpanKind.SERVER"}
    children = [s for s in spans if s["name"] == "load quote"]
    assert len(children) == 2
    for child in children:
        parent = servers[tuple(child["parent"])]
        assert parent["name"] in ("GET /async-work", "GET /sync-work")
        assert child["ids"][0] == parent["ids"][0]


def test_the_sdks_limits_bound_what_the_app_adds(runs):
    many = _by_name(runs["lean"]["spans"])["GET /many"]
    assert len(many["attributes"]) == 128  # OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT's default
    assert many["dropped"] == _by_name(runs["sdk"]["spans"])["GET /many"]["dropped"] > 0
    assert many["attributes"]["app.a199"] == 199  # the oldest go first, as in the SDK
    assert many["attributes"]["http.response.status_code"] == 200


@pytest.mark.parametrize("limits", [
    {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"},  # our own url.path is cut too
    {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3", "OTEL_SPAN_EVENT_COUNT_LIMIT": "1"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "5", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "1"},
])
def test_span_limits_from_the_environment_cut_as_the_sdk_cuts(limits):
    lean, sdk = _run("lean", env=limits), _run("sdk", env=limits)
    assert _comparable(lean["spans"]) == _comparable(sdk["spans"])
    work = _by_name(lean["spans"])["GET /async-work"]
    if "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT" in limits:
        assert work["attributes"]["url.path"] == "/asy" and work["attributes"]["http.route"] == "/asy"
    else:
        assert len(work["attributes"]) <= 5 and work["dropped"] > 0


def test_the_apps_status_and_name_are_kept(runs):
    spans = _by_name(runs["lean"]["spans"])
    assert spans["GET /status-ok-then-5xx"]["status"] == "StatusCode.OK"
    # our layer names the span after its route at the end, as it does for an SDK span
    assert "custom name" not in spans and spans["GET /renamed"]["name"] == "GET /renamed"


def test_the_sdks_warnings_are_the_same(runs):
    assert runs["lean"]["warnings"] == runs["sdk"]["warnings"]
    assert any("invalid key" in w for w in runs["lean"]["warnings"])


SAMPLER = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from mystocks_otel import config
    from mystocks_otel._internal.telemetry import build_tracer_provider

    exporter = InMemorySpanExporter()
    tp = build_tracer_provider(config.load().with_overrides(traces_keep_ratio=1.0), exporter=exporter)
    app = make_app()
    seen = []

    @app.get("/look")
    def look():
        context = trace.get_current_span().get_span_context()
        seen.append([trace.get_current_span().is_recording(), context.trace_flags.sampled,
                     format(context.trace_id, "032x")])
        return {}

    setup_telemetry(app, tracer_provider=tp)
    client = TestClient(app)
    client.get("/look")
    client.get("/look", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    client.get("/look", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203331-01"})
    tp.force_flush()
    done(seen=seen, exported=len(exporter.get_finished_spans()))
"""


@pytest.mark.parametrize("sampler, expected, exported", [
    # the default: a root is sampled; a remote parent's decision is followed
    (None, [[True, True], [False, False], [True, True]], 2),
    ("always_off", [[False, False], [False, False], [False, False]], 0),
    ("always_on", [[True, True], [True, True], [True, True]], 3),
    ("parentbased_always_off", [[False, False], [False, False], [True, True]], 1),
])
def test_otel_traces_sampler_decides_as_it_does_for_sdk_spans(sampler, expected, exported):
    env = {"OTEL_TRACES_SAMPLER": sampler} if sampler else {}
    result = run_scenario(SAMPLER, env=env)
    assert [flags[:2] for flags in result["seen"]] == expected
    assert result["exported"] == exported
    # the remote parents' trace ids are continued whatever the decision
    assert [flags[2] for flags in result["seen"][1:]] == ["0af7651916cd43dd8448eb211c80319c",
                                                          "0af7651916cd43dd8448eb211c80319d"]


ENDED = PROVIDER + """
    app = make_app()
    kept = []

    @app.get("/keep")
    def keep():
        kept.append(trace.get_current_span())
        return {}

    setup_telemetry(app, tracer_provider=tp)
    TestClient(app).get("/keep")
    span = kept[0]
    span.set_attribute("late", 1)
    span.set_attributes({"late": 1})
    span.add_event("late")
    span.add_link(span.get_span_context())
    span.update_name("late")
    span.set_status(trace.StatusCode.ERROR)
    span.end()
    tp.force_flush()
    (exported,) = exporter.get_finished_spans()
    done(type=type(span).__name__, recording=span.is_recording(), late="late" in exported.attributes,
         events=len(exported.events), warnings=warnings_seen)
"""


def test_an_ended_request_span_is_frozen_with_the_sdks_warnings():
    lean, sdk = _run("lean", scenario=ENDED), _run("sdk", scenario=ENDED)
    assert (lean["type"], sdk["type"]) == ("RequestSpan", "_Span")  # the lean path, and the SDK's
    assert lean["recording"] is False and lean["late"] is False and lean["events"] == 0
    assert lean["warnings"] == sdk["warnings"] and len(lean["warnings"]) == 7
    assert {k: v for k, v in lean.items() if k != "type"} == {k: v for k, v in sdk.items() if k != "type"}
