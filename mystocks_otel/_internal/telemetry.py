"""``setup_telemetry(app)``: one line to instrument a FastAPI app."""

from __future__ import annotations

import atexit
import logging
import threading
from contextlib import asynccontextmanager

from .. import config, endpoints
from . import asgi, provider, runtime, standalone, state

_log = logging.getLogger(__name__)


class Telemetry:
    """The handle ``setup_telemetry`` returns."""

    def __init__(self, app, rt: runtime.Runtime | None, settings: config.Settings):
        self.app = app
        self.runtime = rt
        self.settings = settings

    @property
    def enabled(self) -> bool:
        return self.runtime is not None

    def shutdown(self) -> None:
        """Stop the probes, remove library hooks and flush the exporters (bounded).

        The runtime is process-wide: this ends telemetry for every app in the process.
        """
        if self.runtime is not None:
            standalone.stop()
            runtime.stop()
            self.runtime = None


def build_tracer_provider(settings: config.Settings, exporter=None):
    """A TracerProvider for OTEL_TRACES_EXPORTER=otlp|console, or None when tracing is off.

    Spans go through the tail sampler (:mod:`.sampling`: errors, 5xx, slow traces and the
    keep-routes always kept, a ratio of the rest by trace id) to the SDK's batch processor
    (bounded queue; its drops and the sampler's are counted in
    ``mystocks.telemetry.dropped_spans``). ``exporter`` replaces the configured one (tests).
    The provider is shut down by us, bounded (:func:`shutdown_signals`), not at exit.
    """
    if not settings.tracing_enabled and exporter is None:
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from . import sampling

    if exporter is not None:
        pass
    elif settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    batch = BatchSpanProcessor(sampling.CountingExporter(exporter, count_dropped_spans))
    sampling.count_queue_drops(batch, count_dropped_spans)
    sampler = sampling.TailSampler(batch, sampling.Policy.from_settings(settings),
                                   count=count_dropped_spans)
    tracer_provider = TracerProvider(resource=provider.resource(settings), shutdown_on_exit=False)
    tracer_provider.add_span_processor(sampler)
    sampling.SAMPLERS[tracer_provider] = sampler
    atexit.register(runtime.shutdown_tracing, tracer_provider)  # bounded, unlike the SDK's own
    return tracer_provider


def count_dropped_spans(reason: str, count: int) -> None:
    state.counter("mystocks.telemetry.dropped_spans").add(count, reason)


def count_dropped_log_records(reason: str, count: int) -> None:
    state.counter("mystocks.telemetry.dropped_log_records").add(count, reason)


def logs_wanted(settings: config.Settings) -> bool:
    """Whether a log feature is on (OTEL_LOGS_EXPORTER, OTEL_PYTHON_LOG_CORRELATION,
    MYSTOCKS_OTEL_LOG_FORMAT=json) and ``logging`` is not in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS."""
    return (settings.logs_exporter != "none" or settings.log_correlation
            or settings.log_format == "json") and settings.instrumentation_enabled("logging")


def start_logs(settings: config.Settings, tracer_provider=None, exporter=None):
    """The log pipeline (:mod:`.logs`, the only importer of the experimental logs SDK) when a
    log feature is on, once per process; else None."""
    if exporter is None and not logs_wanted(settings):
        return state.logs()
    from . import logs

    return state.start_logs(lambda: logs.start(settings, provider.resource(settings), tracer_provider,
                                               exporter, count_dropped_log_records))[0]


FINAL_FLUSH_SECONDS = 3.0


def _flush_quietly() -> None:
    try:
        provider.force_flush(timeout_millis=FINAL_FLUSH_SECONDS * 1000)
        rt = runtime.current()
        if rt is not None and rt.tracer_provider is not None and hasattr(rt.tracer_provider, "force_flush"):
            rt.tracer_provider.force_flush(int(FINAL_FLUSH_SECONDS * 1000))
        logs = state.logs()
        if logs is not None:
            logs.force_flush(FINAL_FLUSH_SECONDS * 1000)
    except Exception:  # noqa: BLE001 - never fail the host's shutdown
        _log.warning("mystocks-otel: final flush failed", exc_info=True)


def _mark_clean_exit() -> None:
    current = state.provider()
    store = current.multiprocess if current is not None else None
    if store is not None:
        store.mark_clean_exit()


def flush_on_shutdown(app) -> None:
    """Push the last export interval when the app stops.

    uvicorn re-raises SIGTERM after a graceful shutdown, so atexit hooks (and with them
    the SDK's own final export) never run: flush at the end of the app's lifespan instead.
    """
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_):
        # uvicorn binds the app's port right after start-up: the standalone port waits for it
        # (so that the app's port wins a clash; see standalone.MetricsPort).
        standalone.lifespan_starting()
        async with original(app_) as state:
            standalone.lifespan_ready()
            yield state
        standalone.lifespan_ended()  # a worker's standalone port hands over to the others
        _mark_clean_exit()  # a worker stopped or recycled on purpose is not a crash
        # On a daemon thread with a bounded wait: a hung Collector must not hold shutdown.
        flusher = threading.Thread(target=_flush_quietly, name="mystocks-otel-flush", daemon=True)
        flusher.start()
        flusher.join(FINAL_FLUSH_SECONDS)

    app.router.lifespan_context = lifespan


def instrument_app(app, rt: runtime.Runtime) -> None:
    """The per-app part: the ASGI metrics layer, the endpoints, and spans when tracing.

    The layer wraps the app from outside (see :func:`mystocks_otel._internal.asgi.install`) and answers
    the metrics endpoints itself: nothing is added to the app's routes, dependencies,
    middleware list, exception handlers or OpenAPI schema.
    """
    http = runtime.instrumentor("fastapi")  # our `fastapi` instrumentor: HTTP metrics and spans
    spans = None
    if rt.tracing and http.recording:
        from .tracing import ServerSpans

        spans = ServerSpans(rt.tracer_provider, log_exceptions=state.logs() is not None)
    asgi.install(app, rt.settings, switch=http, spans=spans)
    flush_on_shutdown(app)


def serve_metrics_port(settings: config.Settings) -> None:
    """OTEL_EXPORTER_PROMETHEUS_PORT: the endpoints on their own port (once per process).

    Bound once the app's server listens, never over the app's own port (one line says so). With
    several workers (multiprocess mode), every worker accepts from one listening socket that a
    keeper process holds for the run (:mod:`.port_keeper`), with the merged view, so the port
    outlives any one worker.
    """
    if not settings.prometheus_port or "prometheus" not in settings.metrics_exporters:
        return
    store = getattr(state.provider(), "multiprocess", None)
    run = None
    if store is not None:
        from .multiprocess.detection import start_time

        run = (store.master, start_time(store.master))
    try:
        standalone.serve(settings.prometheus_host, settings.prometheus_port,
                         settings.metrics_path or endpoints.DEFAULT_PATH, settings.metrics_token,
                         run=run)
    except OSError as exc:  # the host name does not resolve, for one
        _log.warning("mystocks-otel: OTEL_EXPORTER_PROMETHEUS_PORT=%s: cannot serve on %s: %s",
                     settings.prometheus_port, settings.prometheus_host, exc)


def setup_telemetry(app, *, engines=(), tracer_provider=None, settings: config.Settings | None = None,
                    **options) -> Telemetry:
    """Instrument ``app`` (and the process) in one call. A second call on the same app is a no-op.

    ``options`` override settings read from the environment, by field name of
    :class:`mystocks_otel.config.Settings` (e.g. ``slow_query_seconds=0.2``).
    ``settings`` replaces the environment (the distro passes the ones it validated at start-up).
    Raises :class:`ConfigError` on a bad setting.

    The settings are process-wide: the first set-up's stay in force. A later call (another
    app, or the same one) whose settings differ says so in one warning line naming them.
    """
    settings = (settings if settings is not None else config.load()).with_overrides(**options)
    warn_if_different(settings, tracer_provider)
    existing = getattr(app.state, "mystocks_telemetry", None)
    if existing is not None:
        return existing
    if settings.sdk_disabled:
        _log.info("OTEL_SDK_DISABLED=true: mystocks-otel does nothing")
        handle = Telemetry(app, None, settings)
    else:
        current = runtime.current()
        if current is None:
            warn_about_sdk_settings()
        if tracer_provider is None and current is None:
            tracer_provider = build_tracer_provider(settings)
        rt = runtime.start(settings, engines, tracer_provider)
        if current is None:
            start_logs(rt.settings, rt.tracer_provider)
            serve_metrics_port(rt.settings)
        instrument_app(app, rt)
        handle = Telemetry(app, rt, rt.settings)
    app.state.mystocks_telemetry = handle
    return handle


def warn_about_sdk_settings() -> list[str]:
    """One warning line per OTEL_* variable the SDK reads itself and would drop or ignore
    (``mystocks-otel check-config`` lists the same); returns the lines."""
    lines = [config.advisory_line(variable, problem) for variable, problem in config.advisories()]
    for line in lines:
        _log.warning(line)
    return lines


def warn_if_different(settings: config.Settings, tracer_provider=None) -> list[str]:
    """One warning line when ``settings`` differ from those of the first set-up in this process
    (which stay in force); returns the names that differ."""
    differing = state.first_settings(settings).differences(settings)
    rt = runtime.current()
    if tracer_provider is not None and rt is not None and tracer_provider is not rt.tracer_provider:
        differing.append("tracer_provider")
    if differing:
        _log.warning("mystocks-otel: setup_telemetry was already called in this process with other "
                     "settings; the first call's stay in force, these are ignored: %s",
                     ", ".join(differing))
    return differing
