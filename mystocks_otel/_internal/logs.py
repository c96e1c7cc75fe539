"""Logs with their trace: correlation, OTLP export and JSON lines on stdout.

The only module that imports the OpenTelemetry logs SDK (``opentelemetry.sdk._logs``, still
experimental; pinned with the SDK, 1.45.x). Everything else imports this module lazily, and
only when a log feature is on.

- **Correlation** (``OTEL_PYTHON_LOG_CORRELATION=true``, or the JSON format): upstream's
  ``LoggingInstrumentor`` (opentelemetry-instrumentation-logging, pinned) puts ``otelTraceID``,
  ``otelSpanID``, ``otelTraceSampled`` and ``otelServiceName`` on every ``logging`` record, and,
  with the variable set, calls ``logging.basicConfig`` with its format, as upstream does under
  ``opentelemetry-instrument``. We add ``trace_id`` and ``span_id`` (the same hex values; empty
  outside a span), the names log shippers expect.
- **OTLP** (``OTEL_LOGS_EXPORTER=otlp``; ``console`` prints them): a ``LoggerProvider`` with the
  process's resource, a ``BatchLogRecordProcessor`` (bounded queue, the SDK's default 2048;
  drops counted in ``mystocks.telemetry.dropped_log_records``) and upstream's
  ``LoggingHandler`` on the root logger, kept there through ``dictConfig``/``basicConfig`` as
  upstream keeps it. A record emitted during a request carries the request's trace and span.
  The provider is not made global: FastAPI's own log events go where the app sends them.
- **JSON** (``MYSTOCKS_OTEL_LOG_FORMAT=json``): one JSON object per line on stdout for every
  record reaching the root logger: ``time``, ``level``, ``logger``, ``message``, ``trace_id``,
  ``span_id``, and ``exception`` when there is one.
- **An uncaught exception in a request is logged once, with its trace**
  (:func:`log_uncaught`, called by the ASGI layer while the request's span is current).
  uvicorn's own "Exception in ASGI application" goes to uvicorn's handlers only (its loggers do
  not propagate to the root), so it never reaches our exports and is left alone. When
  FastAPI's native telemetry logs the exception itself for that request
  (``http.server.request.exception``: its logs are on and a LoggerProvider is configured for
  it), **FastAPI's record wins** and ours is not written: it carries the exception, the route
  and the same trace (it is emitted inside our span), and it is what the app configured.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter

_log = logging.getLogger(__name__)
#: The logger of :func:`log_uncaught`'s records.
REQUEST_LOGGER = "mystocks_otel.request"
DROPPED_LOG_RECORDS = "mystocks.telemetry.dropped_log_records"
FLUSH_SECONDS = 2.0


class Pipeline:
    """What :func:`start` set up, undone by :meth:`shutdown`."""

    def __init__(self, settings):
        self.settings = settings
        self.provider: LoggerProvider | None = None
        self.handlers: list[logging.Handler] = []
        self.factory = None  # the record factory we replaced, when we set one
        self.instrumented = False

    @property
    def exporting(self) -> bool:
        return self.provider is not None or bool(self.handlers)

    def force_flush(self, timeout_millis: float = FLUSH_SECONDS * 1000) -> None:
        if self.provider is not None:
            self.provider.force_flush(timeout_millis=int(timeout_millis))

    def shutdown(self) -> None:
        """Remove our handlers and record factory; flush and stop the provider (bounded)."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        self.handlers = []
        if self.factory is not None:  # ours first: upstream's uninstrument restores the one before it
            logging.setLogRecordFactory(self.factory)
            self.factory = None
        if self.instrumented:
            from opentelemetry.instrumentation.logging import LoggingInstrumentor

            LoggingInstrumentor().uninstrument()
            self.instrumented = False
        provider, self.provider = self.provider, None
        if provider is not None:
            _bounded(provider.shutdown, FLUSH_SECONDS)


def _bounded(call, seconds: float) -> None:
    """Run ``call`` on a daemon thread and wait at most ``seconds``: a dead Collector must
    never hold the host's shutdown."""
    worker = threading.Thread(target=_quietly, args=(call,), name="mystocks-otel-logs", daemon=True)
    worker.start()
    worker.join(seconds)


def _quietly(call) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001
        _log.debug("mystocks-otel: log shutdown failed", exc_info=True)


def start(settings, resource, tracer_provider=None, exporter=None, count=None) -> Pipeline:
    """Set up what ``settings`` ask for. ``exporter`` replaces the OTLP/console exporter (tests);
    ``count(reason, n)`` counts dropped records."""
    pipeline = Pipeline(settings)
    atexit.register(pipeline.shutdown)  # bounded: flushes what is queued, then stops
    if settings.log_correlation or settings.log_format == "json":
        _correlate(pipeline, settings, tracer_provider)
    if settings.logs_exporter != "none" or exporter is not None:
        _export(pipeline, settings, resource, exporter, count)
    if settings.log_format == "json":
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        _keep_on_root(handler)
        pipeline.handlers.append(handler)
    return pipeline


def _correlate(pipeline: Pipeline, settings, tracer_provider) -> None:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    instrumentor = LoggingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider,
                                set_logging_format=settings.log_correlation,
                                inject_trace_context=True,
                                enable_log_auto_instrumentation=False)
        pipeline.instrumented = True
    pipeline.factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_with_short_names(pipeline.factory))


def _with_short_names(factory):
    """``trace_id`` and ``span_id`` beside upstream's ``otelTraceID`` and ``otelSpanID``."""

    def record_factory(*args, **kwargs):
        record = factory(*args, **kwargs)
        trace_id = getattr(record, "otelTraceID", "0")
        record.trace_id = "" if trace_id == "0" else trace_id
        span_id = getattr(record, "otelSpanID", "0")
        record.span_id = "" if span_id == "0" else span_id
        return record

    return record_factory


def _export(pipeline: Pipeline, settings, resource, exporter, count) -> None:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    from .sampling import CountingExporter, count_queue_drops

    if exporter is None:
        if settings.logs_exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

            exporter = OTLPLogExporter()
        else:
            exporter = ConsoleLogRecordExporter()
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)  # bounded by us
    if count is not None:
        exporter = CountingExporter(exporter, count)
    batch = BatchLogRecordProcessor(exporter)
    if count is not None:
        count_queue_drops(batch, count)
    provider.add_log_record_processor(batch)
    handler = LoggingHandler(logger_provider=provider)
    handler.addFilter(_not_ours)
    _keep_on_root(handler)
    pipeline.provider = provider
    pipeline.handlers.append(handler)


def _not_ours(record: logging.LogRecord) -> bool:
    """The SDK's and the exporters' own records (a failing export says so) are not exported
    through the pipeline that failed."""
    return not record.name.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))


def _keep_on_root(handler: logging.Handler) -> None:
    """On the root logger, kept there when the app calls ``dictConfig``/``basicConfig`` later
    (upstream's helper, as its own handler is kept)."""
    from opentelemetry.instrumentation.logging.handler import _overwrite_logging_config_fns

    logging.getLogger().addHandler(handler)
    _overwrite_logging_config_fns(handler)


# -- JSON lines --------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per record; the trace from the record (correlation) or the current span."""

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = _ids(record)
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": trace_id,
            "span_id": span_id,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _ids(record: logging.LogRecord) -> tuple[str, str]:
    trace_id = getattr(record, "trace_id", None)
    if trace_id is not None:
        return trace_id, getattr(record, "span_id", "")
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- an uncaught exception in a request --------------------------------------------------------
def log_uncaught(scope, exc: BaseException, route: str | None) -> bool:
    """Log ``exc`` once, at ERROR with its traceback, from inside the request's span; unless
    FastAPI's native telemetry logs it for this request (its record wins). ``route`` is the
    route template (never the raw path). Returns whether this wrote the record."""
    native = scope.get("fastapi.telemetry")
    if native is not None and getattr(native, "logger", None) is not None:
        return False
    method = scope.get("method", "")
    logging.getLogger(REQUEST_LOGGER).error(
        "Exception in ASGI application: %s %s", method, route or "(no route)",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"http.request.method": method, "http.route": route or ""})
    return True
