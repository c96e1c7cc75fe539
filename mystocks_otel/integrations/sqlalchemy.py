"""SQLAlchemy: query duration, slow queries, errors and pool usage; spans when tracing.

:class:`MyStocksSQLAlchemyInstrumentor` is a contrib-style instrumentor
(``opentelemetry_instrumentor`` entry point ``sqlalchemy``): ``opentelemetry-instrument``
loads it, ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sqlalchemy`` (or ``mystocks_sqlalchemy``)
turns it off, and ``setup_telemetry`` runs it unless disabled. It is not upstream's
``opentelemetry.instrumentation.sqlalchemy.SQLAlchemyInstrumentor``, which we never run.

Listens on the ``Engine`` *class*, so every engine is covered however it was made
(directly, by a wrapper around ``create_engine``, or before set-up). Upstream's
instrumentation only reports pool usage, and refuses SQLAlchemy 2.1 (its range is
``<2.1.0``). So the spans come from these same hooks too, on every SQLAlchemy version,
with the stable database semantic conventions: ``db.system.name``, ``db.namespace``,
``db.operation.name``, ``db.query.text`` (the statement as sent, never its parameters),
``server.address`` and ``server.port``, and ``error.type`` on failure.
"""

from __future__ import annotations

import re
import weakref
from time import perf_counter

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..catalog import get
from .._internal.state import PROBING, counter, gauge, histogram

#: What this instrumentor supports (checked by the distro and by ``setup_telemetry``).
SUPPORTED = ("sqlalchemy >= 2.0, < 2.2",)

_TABLE = re.compile(
    r"""\b(?:FROM|INTO|UPDATE|JOIN|TABLE(?:\s+IF(?:\s+NOT)?\s+EXISTS)?)\s+[`"\[]?([A-Za-z_][\w.]*)""",
    re.I,
)
_OPERATIONS = get("mystocks.db.query_duration").labels[0].values
_ERRORS = get("mystocks.db.query_errors").labels[1].values
_CACHE_SIZE = 2048  # distinct statements remembered; SQLAlchemy reuses statement strings
# SQLAlchemy backend name -> semconv db.system.name, and the default port of server databases.
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mariadb",
            "mssql": "microsoft.sql_server", "oracle": "oracle.db"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def pool_name(engine) -> str:
    url = engine.url
    database = (url.database or "").rsplit("/", 1)[-1] or "default"
    return f"{url.get_backend_name()}/{database}"


class MyStocksSQLAlchemyInstrumentor(BaseInstrumentor):
    """Our SQLAlchemy instrumentation, contrib-style. A process has one (BaseInstrumentor
    instances are singletons).

    ``instrument(settings=..., engines=(), tracer_provider=None)``: listens on the ``Engine``
    class with the settings' slow-query threshold and table allow-list (the defaults when no
    settings are given); with a ``tracer_provider``, a CLIENT span per statement too.
    """

    hooks: "EngineHooks | None" = None

    def instrumentation_dependencies(self):
        return SUPPORTED

    def _instrument(self, **kwargs) -> None:
        settings = kwargs.get("settings")
        hooks = EngineHooks(
            slow_query_seconds=getattr(settings, "slow_query_seconds", 0.5),
            tables=getattr(settings, "db_tables", frozenset()))
        hooks.instrument(kwargs.get("engines", ()))
        if kwargs.get("tracer_provider") is not None:
            hooks.trace(kwargs["tracer_provider"])
        self.hooks = hooks

    def _uninstrument(self, **kwargs) -> None:
        hooks, self.hooks = self.hooks, None
        if hooks is not None:
            hooks.uninstrument()

    # -- for the runtime (no-ops while not instrumented) ----------------------------------
    def add_engines(self, engines) -> None:
        if self.hooks is not None:
            for engine in engines:
                self.hooks.engines.add(engine)

    def trace(self, tracer_provider) -> None:
        if self.hooks is not None:
            self.hooks.trace(tracer_provider)

    def untrace(self) -> None:
        if self.hooks is not None:
            self.hooks.untrace()

    @property
    def engines(self) -> list:
        return list(self.hooks.engines) if self.hooks is not None else []

    @property
    def slow_query_seconds(self) -> float | None:
        return self.hooks.slow_query_seconds if self.hooks is not None else None

    def update_pool_metrics(self) -> dict[str, dict[str, int]]:
        return update_pool_metrics(self.engines)


class EngineHooks:
    """The listeners on SQLAlchemy's ``Engine`` class, and what they saw."""

    def __init__(self, slow_query_seconds: float = 0.5, tables: frozenset[str] = frozenset()):
        self.slow_query_seconds = slow_query_seconds
        self.tables = tables
        self.engines: "weakref.WeakSet" = weakref.WeakSet()
        self._statements: dict[str, tuple[str, str]] = {}
        self._duration = histogram("mystocks.db.query_duration")
        self._slow = counter("mystocks.db.slow_queries")
        self._errors = counter("mystocks.db.query_errors")
        self._listening = False
        self._tracer = None  # spans only when tracing is on

    def _listeners(self):
        return (("engine_connect", self._track), ("before_cursor_execute", self._before),
                ("after_cursor_execute", self._after), ("handle_error", self._failed))

    def instrument(self, engines=()) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for engine in engines:
            self.engines.add(engine)
        if not self._listening:
            for name, fn in self._listeners():
                event.listen(Engine, name, fn)
            self._listening = True

    def trace(self, tracer_provider) -> None:
        """Make a CLIENT span per statement through ``tracer_provider``."""
        self._tracer = tracer_provider.get_tracer(__name__)

    def untrace(self) -> None:
        self._tracer = None

    def uninstrument(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self._tracer = None
        if self._listening:
            for name, fn in self._listeners():
                event.remove(Engine, name, fn)
            self._listening = False

    # -- statement classification ------------------------------------------------------
    def classify(self, statement: str) -> tuple[str, str]:
        """(operation, table) for a statement; table is "other" unless allow-listed."""
        cached = self._statements.get(statement)
        if cached is not None:
            return cached
        words = statement.lstrip().split(None, 1)
        operation = words[0].upper() if words else "other"
        if operation not in _OPERATIONS:
            operation = "other"
        match = _TABLE.search(statement) if self.tables else None
        table = match.group(1).strip('`"[]') if match else ""
        result = (operation, table if table in self.tables else "other")
        if len(self._statements) < _CACHE_SIZE:
            self._statements[statement] = result
        return result

    # -- event handlers (must never raise into the query) --------------------------------
    def _track(self, connection, *args) -> None:
        self.engines.add(connection.engine)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if context is not None and not PROBING.get():  # a health probe's SELECT 1 is not counted
            context._mystocks_started = perf_counter()
            if self._tracer is not None:
                context._mystocks_span = self._start_span(conn.engine, statement)

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        started = getattr(context, "_mystocks_started", None)
        if started is None:
            return
        duration = perf_counter() - started
        try:
            operation, table = self.classify(statement)
        except Exception:  # noqa: BLE001 - never break a query for a label
            operation, table = "other", "other"
        self._duration.record(duration, operation, table)
        if duration >= self.slow_query_seconds:
            self._slow.add(1, operation, table)
        _end_span(context, None)

    def _failed(self, context) -> None:
        if PROBING.get():  # a failed probe shows in the health gauges only
            return
        exc = context.original_exception or context.sqlalchemy_exception
        try:
            operation = self.classify(context.statement or "")[0]
            error = type(context.sqlalchemy_exception or exc).__name__
            self._errors.add(1, operation, error if error in _ERRORS else "other")
        except Exception:  # noqa: BLE001
            pass
        _end_span(context.execution_context, exc)

    # -- spans ---------------------------------------------------------------------------
    def _start_span(self, engine, statement: str):
        try:
            from opentelemetry.trace import SpanKind

            url = engine.url
            backend = url.get_backend_name()
            system = _SYSTEMS.get(backend, "other_sql")
            attributes = {"db.system.name": system, "db.query.text": statement}
            operation = self.classify(statement)[0]
            if operation != "other":
                attributes["db.operation.name"] = operation
            namespace = url.database if url.host else None  # SQLite's "database" is a file path
            if namespace:
                attributes["db.namespace"] = namespace
            if url.host:
                attributes["server.address"] = url.host
                port = url.port or _DEFAULT_PORTS.get(backend)
                if port:
                    attributes["server.port"] = port
            name = " ".join(p for p in (attributes.get("db.operation.name"), namespace) if p)
            return self._tracer.start_span(name or system, kind=SpanKind.CLIENT,
                                           attributes=attributes)
        except Exception:  # noqa: BLE001 - never break a query for a span
            return None

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

def _end_span(context, error: BaseException | None) -> None:
    span = getattr(context, "_mystocks_span", None)
    if span is None:
        return
    try:
        context._mystocks_span = None
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            # semconv: the database's status code when the driver gives one (SQLSTATE),
            # else the exception's fully-qualified class name.
            code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
            kind = type(error)
            error_type = str(code) if code else f"{kind.__module__}.{kind.__qualname__}"
            if code:
                span.set_attribute("db.response.status_code", str(code))
            span.set_attribute("error.type", error_type)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()
    except Exception:  # noqa: BLE001
        pass


def update_pool_metrics(engines) -> dict[str, dict[str, int]]:
    """Read each engine's pool; returns {pool: {active, idle, open, max}}.

    Engines on the same database share one ``pool`` label, so their counts are summed.
    """
    report: dict[str, dict[str, int]] = {}
    for engine in list(engines):
        status = pool_status(engine.pool)
        if status is not None:
            total = report.setdefault(pool_name(engine), dict.fromkeys(status, 0))
            for field, value in status.items():
                total[field] += value
    semconv = counter("db.client.connection.count")
    for name, status in report.items():
        for field, value in status.items():
            gauge(f"mystocks.db.connections_{field}").set(value, name)
        semconv.set_total(status["active"], name, "used")
        semconv.set_total(status["idle"], name, "idle")
    return report


def pool_status(pool) -> dict[str, int] | None:
    """Counts from a QueuePool-like pool; None for pools that keep no counts."""
    if not hasattr(pool, "checkedout"):
        return None
    active, idle = pool.checkedout(), pool.checkedin()
    size = pool.size()
    overflow = getattr(pool, "_max_overflow", 0)
    return {"active": active, "idle": idle, "open": active + idle,
            "max": size + overflow if overflow >= 0 else size}
