"""redis-py: command duration and errors (upstream's instrumentation emits no metrics).

:class:`MyStocksRedisInstrumentor` is a contrib-style instrumentor (``opentelemetry_instrumentor``
entry point ``redis``): ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis`` (or ``mystocks_redis``)
turns it off. Spans, when tracing is on, come from upstream's ``RedisInstrumentor`` run with a
no-op meter provider (:meth:`MyStocksRedisInstrumentor.trace`), so no series is duplicated.

Wraps ``execute_command`` and pipeline ``execute`` on the client *classes*, so every
client is covered, including ones created before set-up. Clients seen are remembered
(weakly) for the health probe and for the cache gauges read from Redis ``INFO``
(:func:`update_cache_info`, polled by the runtime).
"""

from __future__ import annotations

import weakref
from time import perf_counter

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..catalog import get
from .._internal.state import PROBING, counter, gauge, histogram

#: What this instrumentor supports (checked by the distro and by ``setup_telemetry``).
SUPPORTED = ("redis >= 5, < 9",)

_COMMANDS = get("mystocks.redis.command_duration").labels[0].values
_ERRORS = get("mystocks.redis.command_errors").labels[1].values

# (module, attribute) pairs we wrap; async ones are awaited inside the wrapper.
_SYNC_TARGETS = (("redis.client", "Redis.execute_command"), ("redis.client", "Pipeline.execute"))
_ASYNC_TARGETS = (("redis.asyncio.client", "Redis.execute_command"),
                  ("redis.asyncio.client", "Pipeline.execute"))


def _command_name(args) -> str:
    if not args:
        return "PIPELINE"
    name = args[0]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    name = str(name).split(" ", 1)[0].upper()
    return name if name in _COMMANDS else "other"


def update_cache_info(client, cache: str = "redis") -> dict:
    """Memory, keys and evictions from a synchronous client's ``INFO``, into the cache metrics."""
    info = client.info()
    keys = sum(v.get("keys", 0) for k, v in info.items()
               if k.startswith("db") and isinstance(v, dict))
    report = {"memory_bytes": info.get("used_memory", 0), "keys": keys,
              "evictions": info.get("evicted_keys", 0)}
    gauge("mystocks.cache.memory_usage").set(report["memory_bytes"], cache)
    gauge("mystocks.cache.keys").set(keys, cache)
    counter("mystocks.cache.evictions").set_total(report["evictions"], cache)
    return report


def _synchronous(client) -> bool:
    # Async clients cannot be called from the runtime's poller thread.
    return "asyncio" not in type(client).__module__


class MyStocksRedisInstrumentor(BaseInstrumentor):
    """Our redis-py instrumentation, contrib-style (a singleton, as every BaseInstrumentor).

    ``instrument(tracer_provider=None)``: wraps the client classes; with a
    ``tracer_provider``, spans too (:meth:`trace`).
    """

    hooks: "ClientHooks | None" = None

    def instrumentation_dependencies(self):
        return SUPPORTED

    def _instrument(self, **kwargs) -> None:
        hooks = ClientHooks()
        hooks.instrument()
        self.hooks = hooks
        if kwargs.get("tracer_provider") is not None:
            self.trace(kwargs["tracer_provider"])

    def _uninstrument(self, **kwargs) -> None:
        self.untrace()
        hooks, self.hooks = self.hooks, None
        if hooks is not None:
            hooks.uninstrument()

    def trace(self, tracer_provider) -> None:
        """Spans through upstream's instrumentor; its metrics go to a no-op provider."""
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        upstream = RedisInstrumentor()
        if not upstream.is_instrumented_by_opentelemetry:
            upstream.instrument(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())

    def untrace(self) -> None:
        try:
            from opentelemetry.instrumentation.redis import RedisInstrumentor
        except ImportError:
            return
        upstream = RedisInstrumentor()
        if upstream.is_instrumented_by_opentelemetry:
            upstream.uninstrument()

    @property
    def clients(self) -> list:
        return list(self.hooks.clients) if self.hooks is not None else []

    def update_cache_metrics(self) -> dict:
        return self.hooks.update_cache_metrics() if self.hooks is not None else {}


class ClientHooks:
    """The wrappers on redis-py's client classes, and the clients they saw."""

    def __init__(self):
        self.clients: "weakref.WeakSet" = weakref.WeakSet()
        self._duration = histogram("mystocks.redis.command_duration")
        self._errors = counter("mystocks.redis.command_errors")
        self._wrapped: list[tuple[object, str]] = []

    def update_cache_metrics(self) -> dict:
        """Cache gauges from ``INFO`` of the first synchronous client seen; {} if none."""
        clients = [c for c in list(self.clients) if _synchronous(c)]
        return update_cache_info(clients[0]) if clients else {}

    def _done(self, instance, args, started, error) -> None:
        # Runs in the command's ``finally``: raising here would replace the command's outcome.
        try:
            command = _command_name(args)
            self._duration.record(perf_counter() - started, command)
            if error is not None:
                name = type(error).__name__
                self._errors.add(1, command, name if name in _ERRORS else "other")
            self.clients.add(instance)
        except Exception:  # noqa: BLE001 - telemetry must not hurt the command
            pass

    def _sync(self, wrapped, instance, args, kwargs):
        if PROBING.get():  # the health probe's PING and the cache gauges' INFO are not counted
            return wrapped(*args, **kwargs)
        started, error = perf_counter(), None
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            error = exc
            raise
        finally:
            self._done(instance, args, started, error)

    async def _async(self, wrapped, instance, args, kwargs):
        if PROBING.get():
            return await wrapped(*args, **kwargs)
        started, error = perf_counter(), None
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            error = exc
            raise
        finally:
            self._done(instance, args, started, error)

    def instrument(self) -> None:
        if self._wrapped:
            return
        import importlib

        from wrapt import wrap_function_wrapper

        for targets, wrapper in ((_SYNC_TARGETS, self._sync), (_ASYNC_TARGETS, self._async)):
            for module_name, attribute in targets:
                try:
                    module = importlib.import_module(module_name)
                except ImportError:
                    continue
                wrap_function_wrapper(module, attribute, wrapper)
                owner, name = attribute.split(".")
                self._wrapped.append((getattr(module, owner), name))

    def uninstrument(self) -> None:
        from opentelemetry.instrumentation.utils import unwrap

        for owner, name in self._wrapped:
            unwrap(owner, name)
        self._wrapped.clear()
