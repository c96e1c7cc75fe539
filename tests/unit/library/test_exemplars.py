"""Exemplars: with tracing on, the latency histograms keep the latest exemplar of each bucket,
taken from the span current when the ASGI layer records (after the app returned): the server
span. /metrics serves them in OpenMetrics; an SDK reader (OTLP's path) gets the same ones."""

from core_helpers import run_scenario

SCENARIO = """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    from mystocks_otel._internal import provider
    from mystocks_otel._internal.sdk_bridge import InMemoryReader

    exporter = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app(); setup_telemetry(app, tracer_provider=tp if TRACING else None)
    reader = InMemoryReader(); provider.current().provider.add_metric_reader(reader)
    client = TestClient(app)
    for i in range(3):
        client.get(f"/api/quotes/S{i}")
    page = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    text = client.get("/metrics").text
    exemplars = [dict(s.exemplar.labels, value=s.exemplar.value, le=s.labels["le"])
                 for f in text_string_to_metric_families(page.text) for s in f.samples
                 if s.exemplar is not None and s.labels.get("http_route") == "/api/quotes/{symbol}"]
    pushed = [(hex(e.trace_id), hex(e.span_id))
              for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name == "http.server.request.duration"
              for p in m.data.data_points for e in p.exemplars]
    servers = [(hex(s.context.trace_id), hex(s.context.span_id)) for s in exporter.get_finished_spans()
               if s.kind == SpanKind.SERVER and "/api/quotes" in s.name]
    done(content_type=page.headers["content-type"], eof=page.text.endswith("# EOF\\n"),
         exemplars=exemplars, pushed=pushed, servers=servers, text_has_exemplar=" # {" in text)
"""


def test_exemplars_link_the_latency_histogram_to_exported_server_spans():
    result = run_scenario(SCENARIO.replace("TRACING", "True"))
    assert result["content_type"].startswith("application/openmetrics-text; version=1.0.0")
    assert result["eof"] and not result["text_has_exemplar"]
    servers = {tuple(s) for s in result["servers"]}
    assert len(servers) == 3
    assert result["exemplars"], "no exemplar on /metrics"
    for exemplar in result["exemplars"]:
        ids = (hex(int(exemplar["trace_id"], 16)), hex(int(exemplar["span_id"], 16)))
        assert ids in servers, (ids, servers)  # the request's own server span
        assert float(exemplar["le"]) >= exemplar["value"]
    assert result["pushed"] and {tuple(p) for p in result["pushed"]} <= servers
    # the latest request's span is the exemplar of its bucket
    assert {(hex(int(e["trace_id"], 16)), hex(int(e["span_id"], 16))) for e in result["exemplars"]} <= servers


def test_no_exemplars_without_tracing():
    result = run_scenario(SCENARIO.replace("TRACING", "False"))
    assert result["exemplars"] == [] and result["pushed"] == []
