"""Tiny in-test OTLP/HTTP endpoints: a recording receiver and a black hole."""

from __future__ import annotations

import gzip
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class RecordingCollector:
    """Accepts POST /v1/metrics (and /v1/traces, /v1/logs) and keeps every decoded request."""

    def __init__(self):
        self.requests: list[ExportMetricsServiceRequest] = []
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.log_requests: list[ExportLogsServiceRequest] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with collector._lock:
                    collector.paths.append(self.path)
                    if self.path == "/v1/metrics":
                        collector.requests.append(ExportMetricsServiceRequest.FromString(body))
                    elif self.path == "/v1/traces":
                        collector.trace_requests.append(ExportTraceServiceRequest.FromString(body))
                    elif self.path == "/v1/logs":
                        collector.log_requests.append(ExportLogsServiceRequest.FromString(body))
                self.send_response(200 if self.path in ("/v1/metrics", "/v1/traces", "/v1/logs") else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[ExportMetricsServiceRequest]:
        with self._lock:
            return list(self.requests)

    def span_ids(self) -> set[tuple[str, str]]:
        """(trace id, span id) in lowercase hex of every span received."""
        with self._lock:
            requests = list(self.trace_requests)
        return {(span.trace_id.hex(), span.span_id.hex()) for request in requests
                for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}

    def spans(self) -> list:
        """Every span received (protobuf ``Span`` messages)."""
        with self._lock:
            requests = list(self.trace_requests)
        return [span for request in requests for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def log_records(self) -> list:
        """Every log record received (protobuf ``LogRecord`` messages)."""
        with self._lock:
            requests = list(self.log_requests)
        return [record for request in requests for rl in request.resource_logs
                for sl in rl.scope_logs for record in sl.log_records]

    def exemplars(self, name: str) -> list[tuple[str, str]]:
        """(trace id, span id) of every exemplar pushed on histogram ``name``."""
        return [(e.trace_id.hex(), e.span_id.hex()) for request in self.snapshot()
                for rm in request.resource_metrics for sm in rm.scope_metrics
                for metric in sm.metrics if metric.name == name and metric.HasField("histogram")
                for point in metric.histogram.data_points for e in point.exemplars]

    def metric_names(self) -> set[str]:
        return {metric.name for request in self.snapshot()
                for rm in request.resource_metrics
                for sm in rm.scope_metrics for metric in sm.metrics}

    def resource_attributes(self) -> list[dict[str, str]]:
        return [{kv.key: kv.value.string_value for kv in rm.resource.attributes}
                for request in self.snapshot() for rm in request.resource_metrics]

    def sum_points(self, name: str) -> list[tuple[dict, float]]:
        out = []
        for request in self.snapshot():
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name and metric.HasField("sum"):
                            for point in metric.sum.data_points:
                                attrs = {kv.key: kv.value.string_value for kv in point.attributes}
                                out.append((attrs, point.as_double or point.as_int))
        return out


class BlackHole:
    """Accepts TCP connections and never answers (a hung Collector)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)  # held open, never read from nor answered

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()
