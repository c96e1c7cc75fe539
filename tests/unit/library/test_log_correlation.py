"""OTEL_PYTHON_LOG_CORRELATION, as upstream: every ``logging`` record carries otelTraceID,
otelSpanID (and trace_id, span_id), those of the request's server span inside a request, and
the root logger gets upstream's format; off, records are left alone."""

from core_helpers import run_scenario

SCENARIO = """
    import logging
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    seen = []
    class Keep(logging.Handler):
        def emit(self, record):
            if record.name == "shop":
                seen.append({k: getattr(record, k, None)
                             for k in ("otelTraceID", "otelSpanID", "trace_id", "span_id")})
    exporter = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app()
    @app.get("/log")
    def log_something():
        logging.getLogger("shop").warning("inside")
        return "ok"
    setup_telemetry(app, tracer_provider=tp)
    logging.getLogger().addHandler(Keep())
    logging.getLogger("shop").warning("outside")
    TestClient(app).get("/log")
    (server,) = [s for s in exporter.get_finished_spans() if s.name == "GET /log"]
    fmt = [h.formatter._fmt for h in logging.getLogger().handlers if h.formatter is not None]
    done(seen=seen, server=[format(server.context.trace_id, "032x"), format(server.context.span_id, "016x")],
         formats=fmt)
"""


def test_correlation_puts_the_requests_trace_on_every_record():
    result = run_scenario(SCENARIO, env={"OTEL_PYTHON_LOG_CORRELATION": "true"})
    outside, inside = result["seen"]
    assert outside == {"otelTraceID": "0", "otelSpanID": "0", "trace_id": "", "span_id": ""}
    trace_id, span_id = result["server"]
    assert inside == {"otelTraceID": trace_id, "otelSpanID": span_id, "trace_id": trace_id, "span_id": span_id}
    assert any("otelTraceID" in f for f in result["formats"])  # upstream's basicConfig format


def test_without_correlation_records_are_left_alone():
    result = run_scenario(SCENARIO)
    assert result["seen"] == [dict.fromkeys(("otelTraceID", "otelSpanID", "trace_id", "span_id"))] * 2
    assert result["formats"] == []
