"""The process-wide telemetry runtime: provider, instrumentors, probes and poller.

Started once per process, by ``setup_telemetry`` or by the distro; every further
app set up in the same process shares it.
"""

from __future__ import annotations

import logging
import threading

from . import provider
from .config import Settings
from .integrations.health import HealthRegistry, Poller, probe_engines, probe_redis
from .integrations.redis import RedisInstrumentor
from .integrations.sqlalchemy import SQLAlchemyInstrumentor

_log = logging.getLogger(__name__)


# The library hooks are process-wide and may be installed before the runtime starts
# (the distro installs them at interpreter start, the runtime at the first app).
SQLALCHEMY = SQLAlchemyInstrumentor()
REDIS = RedisInstrumentor()
HEALTH = HealthRegistry()  # the app may report health before set-up


def install_library_hooks() -> None:
    SQLALCHEMY.instrument()
    REDIS.instrument()


class Runtime:
    def __init__(self, settings: Settings, tracer_provider=None):
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.sqlalchemy = SQLALCHEMY
        self.sqlalchemy.slow_query_seconds = settings.slow_query_seconds
        self.sqlalchemy.tables = settings.db_tables
        self.redis = REDIS
        self.health = HEALTH
        self.health.pin_seconds = 3 * settings.probe_interval_seconds
        self.sampler = None
        self.poller: Poller | None = None
        self.state: provider.ProviderState | None = None

    def start(self, engines=()) -> "Runtime":
        self.state = provider.start(self.settings)
        install_library_hooks()
        self.sqlalchemy.instrument(engines)
        if self.tracing:
            _instrument_upstream_for_spans(self.tracer_provider, engines)
        if self.settings.system_metrics:
            from .integrations.system import SystemSampler

            self.sampler = SystemSampler()
        tasks = [self.sqlalchemy.update_pool_metrics, self.update_cache_metrics, self.probe_health]
        if self.sampler is not None:
            tasks.insert(0, self.sampler.sample)
        self.poller = Poller(self.settings.probe_interval_seconds, tasks)
        self.poller.start()
        return self

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    # -- periodic updates --------------------------------------------------------------
    def update_cache_metrics(self) -> dict:
        from .recorders import update_cache_metrics

        clients = [c for c in list(self.redis.clients) if "asyncio" not in type(c).__module__]
        return update_cache_metrics(clients[0]) if clients else {}

    def probe_health(self) -> dict:
        dependencies = {**probe_engines(self.sqlalchemy.engines), **probe_redis(self.redis.clients)}
        components = {"exporter": True}
        if self.sqlalchemy.engines:
            components["database"] = all(
                up for name, up in dependencies.items() if name != "redis"
            )
        if "redis" in dependencies:
            components["cache"] = dependencies["redis"]
        return self.health.report(components, dependencies, pin=False)

    def shutdown(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        self.redis.uninstrument()
        self.sqlalchemy.uninstrument()
        provider.shutdown()


def _instrument_upstream_for_spans(tracer_provider, engines) -> None:
    """Upstream instrumentors add spans only: their metrics go to a no-op provider,
    so HTTP/DB series are never duplicated."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor as UpstreamRedis
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor as UpstreamSQL
    from opentelemetry.metrics import NoOpMeterProvider

    for instrumentor, extra in ((UpstreamSQL(), {"engines": list(engines)} if engines else {}),
                                (UpstreamRedis(), {})):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=tracer_provider,
                                    meter_provider=NoOpMeterProvider(), **extra)


def _uninstrument_upstream_for_spans() -> None:
    """Undo :func:`_instrument_upstream_for_spans` (upstream instrumentors are singletons)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor as UpstreamRedis
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor as UpstreamSQL

    for instrumentor in (UpstreamSQL(), UpstreamRedis()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


_lock = threading.Lock()
_runtime: Runtime | None = None


def current() -> Runtime | None:
    return _runtime


def start(settings: Settings, engines=(), tracer_provider=None) -> Runtime:
    """The process's runtime, started on first call; later calls add engines only."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(settings, tracer_provider).start(engines)
        elif engines:
            _runtime.sqlalchemy.instrument(engines)
        return _runtime


def stop() -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.shutdown()
