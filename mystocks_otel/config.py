"""Settings from ``OTEL_*`` and ``MYSTOCKS_OTEL_*`` environment variables.

Read once, at set-up. A bad value raises :class:`ConfigError` whose message is one
line naming the variable and the accepted form, so start-up fails loudly instead of
running uninstrumented.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Mapping

EXPORTERS = ("prometheus", "otlp", "none")
TRACE_EXPORTERS = ("none", "otlp", "console")
LOG_EXPORTERS = ("none", "otlp", "console")
LOG_FORMATS = ("plain", "json")
#: The order-placing route kept whole by the tail sampler, as "METHOD route-template" regexes.
DEFAULT_KEEP_ROUTES = r"^POST /api/orders"
MAX_BUCKETS = 40
OTLP_PROTOCOLS = ("http/protobuf",)
MAX_CARDINALITY = 10_000
DEFAULT_EXCLUDED_URLS = r"^/metrics(/|$),^/health,^/healthz,^/readyz,^/livez"
#: Our instrumentors' aliases in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS -> their entry-point names
#: (mystocks_otel.integrations).
#: Bounds of every numeric setting: variable -> (Settings field, lowest, highest).
NUMERIC_BOUNDS: dict[str, tuple[str, float, float]] = {
    "OTEL_METRIC_EXPORT_INTERVAL": ("export_interval_ms", 100, 86_400_000),
    "OTEL_EXPORTER_PROMETHEUS_PORT": ("prometheus_port", 1, 65_535),
    "MYSTOCKS_OTEL_CARDINALITY_LIMIT": ("cardinality_limit", 1, MAX_CARDINALITY),
    "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": ("slow_query_seconds", 0.001, 3600.0),
    "MYSTOCKS_OTEL_PROBE_INTERVAL": ("probe_interval_seconds", 0.1, 86_400.0),
    "MYSTOCKS_OTEL_TRACES_SLOW_SECONDS": ("traces_slow_seconds", 0.001, 3600.0),
    "MYSTOCKS_OTEL_TRACES_KEEP_RATIO": ("traces_keep_ratio", 0.0, 1.0),
}
#: Numeric settings for which zero is a meaningful value (keep no ordinary trace).
ZERO_ALLOWED = frozenset({"traces_keep_ratio"})
_EXAMPLES = {"MYSTOCKS_OTEL_PROBE_INTERVAL": 15, "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": 0.5,
             "MYSTOCKS_OTEL_TRACES_SLOW_SECONDS": 1.0}
INSTRUMENTATION_ALIASES = {"mystocks_fastapi": "fastapi", "mystocks_sqlalchemy": "sqlalchemy",
                           "mystocks_redis": "redis"}


class ConfigError(ValueError):
    """A setting is invalid. ``str(error)`` is one line naming the variable."""

    def __init__(self, variable: str, value: object, expected: str):
        self.variable = variable
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")


@dataclass(frozen=True)
class Settings:
    # None: OpenTelemetry's convention decides (OTEL_RESOURCE_ATTRIBUTES' service.name, else
    # "unknown_service:<executable>"); applications name themselves (the demo does).
    service_name: str | None = None
    metrics_exporters: tuple[str, ...] = ("prometheus",)
    traces_exporter: str = "none"
    export_interval_ms: int = 15_000
    prometheus_host: str = "localhost"  # the OpenTelemetry specification's default
    prometheus_port: int | None = None  # a standalone /metrics port only when set
    otlp_protocol: str = "http/protobuf"
    cardinality_limit: int = 2_000
    slow_query_seconds: float = 0.5
    db_tables: frozenset[str] = frozenset()
    probe_interval_seconds: float = 15.0
    system_metrics: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    metrics_path: str | None = None  # None: /metrics, moved aside when the app routes it itself
    excluded_urls: str = DEFAULT_EXCLUDED_URLS
    sdk_disabled: bool = False
    #: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, aliases resolved (``*``: all of them)
    disabled_instrumentations: frozenset[str] = frozenset()
    #: where the multiprocess store makes its private per-user base (None: /dev/shm, else
    #: the temp directory)
    multiprocess_dir: str | None = None
    #: serve prometheus_client's default registry (the app's own prometheus_client metrics) on
    #: the same /metrics
    prometheus_client_registry: bool = True
    #: set the global MeterProvider, when no other SDK has, so the app's own OpenTelemetry
    #: instruments are exported with ours
    global_meter_provider: bool = True
    #: HTTP duration buckets in seconds (None: the catalog's)
    http_buckets: tuple[float, ...] | None = None
    #: http.server.request.body.size and http.server.response.body.size
    http_body_size: bool = False
    #: status codes as 2xx, 4xx, 5xx on the HTTP metrics
    group_status_codes: bool = False
    logs_exporter: str = "none"
    #: OTEL_PYTHON_LOG_CORRELATION: trace_id and span_id on every log record
    log_correlation: bool = False
    #: plain: the app's logging untouched; json: one JSON line per record on stdout
    log_format: str = "plain"
    #: tail sampling: the share of ordinary traces kept (errors, 5xx, slow and keep-routes always are)
    traces_keep_ratio: float = 0.1
    #: a trace whose local root took longer than this is always kept (the latency SLO's threshold)
    traces_slow_seconds: float = 1.0
    #: comma-separated regexes on "METHOD route-template"; matching traces are always kept
    traces_keep_routes: str = DEFAULT_KEEP_ROUTES

    @property
    def tracing_enabled(self) -> bool:
        return self.traces_exporter != "none"

    def instrumentation_enabled(self, name: str) -> bool:
        """Whether our instrumentor of entry point ``name`` (fastapi, sqlalchemy, redis) runs."""
        return "*" not in self.disabled_instrumentations and name not in self.disabled_instrumentations

    def differences(self, other: "Settings") -> list[str]:
        """The names of the fields whose values differ from ``other``'s."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def with_overrides(self, **overrides) -> "Settings":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError("setup_telemetry option", unknown[0], f"one of {', '.join(sorted(known))}")
        for variable, (field_name, low, high) in NUMERIC_BOUNDS.items():
            if field_name in overrides and overrides[field_name] is not None:
                # Below the environment's lowest is the programmer's choice (tests poll every
                # millisecond); zero, negative, nan and infinite values never are.
                _check_bounds(f"setup_telemetry option {field_name}", overrides[field_name],
                              low if isinstance(low, int) else 0.0, high,
                              zero_allowed=field_name in ZERO_ALLOWED)
        if overrides.get("http_buckets") is not None:
            buckets = overrides["http_buckets"]
            text = ",".join(str(v) for v in buckets) if isinstance(buckets, (list, tuple)) else "?"
            overrides["http_buckets"] = _buckets("setup_telemetry option http_buckets", text)
        return replace(self, **overrides)


def _check_bounds(name: str, value: object, low: float, high: float, zero_allowed: bool = False) -> None:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and low <= value <= high
          and (low > 0 or value > 0 or (zero_allowed and value == 0)))
    if not ok:
        raise ConfigError(name, value, f"a number from {_num(low)} to {_num(high)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- parsers: each returns the value or raises ConfigError naming the variable -------------


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(name, raw, f"one of {', '.join(choices)}")
    return value


def _exporters(name: str, raw: str) -> tuple[str, ...]:
    parts = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    if not parts or any(p not in EXPORTERS for p in parts) or ("none" in parts and len(parts) > 1):
        raise ConfigError(name, raw, "prometheus, otlp, prometheus,otlp or none")
    return () if parts == ("none",) else tuple(dict.fromkeys(parts))


def _int(name: str, raw: str, low: int, high: int) -> int:
    text = raw.strip()
    value = int(text) if re.fullmatch(r"[+-]?[0-9]{1,12}", text) else None
    if value is None or not low <= value <= high:
        raise ConfigError(name, raw, f"an integer from {low} to {high}")
    return value


def _seconds(name: str, raw: str, low: float, high: float) -> float:
    """A finite number of seconds from ``low`` to ``high`` (nan, inf, 1e308 and 1e-9 are refused:
    a poller at 1e-9 s spins a core, and at 1e308 s its thread dies of OverflowError)."""
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(name, raw, f"a positive number of seconds from {_num(low)} to {_num(high)}, "
                                     f"e.g. {_EXAMPLES.get(name, 0.5)}")
    return value


def _bounds(variable: str) -> tuple[float, float]:
    return NUMERIC_BOUNDS[variable][1:]


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, raw, "true or false")


def _tables(name: str, raw: str) -> frozenset[str]:
    tables = [t.strip() for t in raw.split(",") if t.strip()]
    bad = [t for t in tables if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", t)]
    if bad:
        raise ConfigError(name, raw, "a comma-separated list of table names, e.g. quotes,orders")
    return frozenset(tables)


def _regexes(name: str, raw: str) -> str:
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        try:
            re.compile(part)
        except re.error:
            raise ConfigError(name, raw, "a comma-separated list of regular expressions") from None
    return raw


def _path(name: str, raw: str) -> str:
    if not re.fullmatch(r"(/[^/\s?#]+)+", raw):
        raise ConfigError(name, raw, "a URL path starting with / with no trailing slash or spaces, e.g. /metrics")
    return raw


def _instrumentations(name: str, raw: str) -> frozenset[str]:
    """Comma-separated names, as opentelemetry-instrument reads them (spaces stripped)."""
    names = (part.strip() for part in raw.split(","))
    return frozenset(INSTRUMENTATION_ALIASES.get(n, n) for n in names if n)


def _buckets(name: str, raw: str) -> tuple[float, ...]:
    """Strictly increasing, positive, finite seconds, at most MAX_BUCKETS of them."""
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        values = ()
    ok = (0 < len(values) <= MAX_BUCKETS and all(math.isfinite(v) and v > 0 for v in values)
          and all(a < b for a, b in zip(values, values[1:])))
    if not ok:
        raise ConfigError(name, raw, f"up to {MAX_BUCKETS} increasing positive numbers of seconds, "
                                     f"comma-separated, e.g. 0.05,0.1,0.25,0.5,1,2.5")
    return values


def _ratio(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(name, raw, "a ratio from 0 to 1, e.g. 0.1")
    return value


def _directory(name: str, raw: str) -> str:
    if not os.path.isabs(raw) or not os.path.isdir(raw):
        raise ConfigError(name, raw, "an absolute path to an existing directory, e.g. /dev/shm")
    return raw


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(name, raw, "a non-empty string")
    return raw.strip()


# variable -> (Settings field, parser)
_VARIABLES: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "OTEL_SERVICE_NAME": ("service_name", _text),
    "OTEL_METRICS_EXPORTER": ("metrics_exporters", _exporters),
    "OTEL_TRACES_EXPORTER": ("traces_exporter", lambda n, r: _choice(n, r, TRACE_EXPORTERS)),
    "OTEL_METRIC_EXPORT_INTERVAL": ("export_interval_ms", lambda n, r: _int(n, r, *_bounds(n))),
    "OTEL_EXPORTER_PROMETHEUS_HOST": ("prometheus_host", _text),
    "OTEL_EXPORTER_PROMETHEUS_PORT": ("prometheus_port", lambda n, r: _int(n, r, *_bounds(n))),
    "OTEL_EXPORTER_OTLP_PROTOCOL": ("otlp_protocol", lambda n, r: _choice(n, r, OTLP_PROTOCOLS)),
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": ("otlp_protocol", lambda n, r: _choice(n, r, OTLP_PROTOCOLS)),
    "OTEL_SDK_DISABLED": ("sdk_disabled", _bool),
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": ("excluded_urls", _regexes),
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ("disabled_instrumentations", _instrumentations),
    "MYSTOCKS_OTEL_CARDINALITY_LIMIT": (
        "cardinality_limit", lambda n, r: _int(n, r, *_bounds(n))),
    "MYSTOCKS_OTEL_SLOW_QUERY_SECONDS": ("slow_query_seconds", lambda n, r: _seconds(n, r, *_bounds(n))),
    "MYSTOCKS_OTEL_DB_TABLES": ("db_tables", _tables),
    "MYSTOCKS_OTEL_PROBE_INTERVAL": ("probe_interval_seconds", lambda n, r: _seconds(n, r, *_bounds(n))),
    "MYSTOCKS_OTEL_SYSTEM_METRICS": ("system_metrics", _bool),
    "MYSTOCKS_OTEL_METRICS_TOKEN": ("metrics_token", _text),
    "MYSTOCKS_OTEL_METRICS_PATH": ("metrics_path", _path),
    "MYSTOCKS_OTEL_MULTIPROCESS_DIR": ("multiprocess_dir", _directory),
    "MYSTOCKS_OTEL_PROMETHEUS_CLIENT": ("prometheus_client_registry", _bool),
    "MYSTOCKS_OTEL_GLOBAL_METER_PROVIDER": ("global_meter_provider", _bool),
    "MYSTOCKS_OTEL_HTTP_BUCKETS": ("http_buckets", _buckets),
    "MYSTOCKS_OTEL_HTTP_BODY_SIZE": ("http_body_size", _bool),
    "MYSTOCKS_OTEL_HTTP_GROUP_STATUS_CODES": ("group_status_codes", _bool),
    "OTEL_LOGS_EXPORTER": ("logs_exporter", lambda n, r: _choice(n, r, LOG_EXPORTERS)),
    "OTEL_PYTHON_LOG_CORRELATION": ("log_correlation", _bool),
    "MYSTOCKS_OTEL_LOG_FORMAT": ("log_format", lambda n, r: _choice(n, r, LOG_FORMATS)),
    "MYSTOCKS_OTEL_TRACES_KEEP_RATIO": ("traces_keep_ratio", _ratio),
    "MYSTOCKS_OTEL_TRACES_SLOW_SECONDS": ("traces_slow_seconds", lambda n, r: _seconds(n, r, *_bounds(n))),
    "MYSTOCKS_OTEL_TRACES_KEEP_ROUTES": ("traces_keep_routes", _regexes),
}

#: Documented in the README's table; a test keeps the two in step.
VARIABLES = tuple(_VARIABLES)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from the environment; raise ConfigError on the first bad value."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for variable, (field_name, parse) in _VARIABLES.items():
        raw = env.get(variable)
        if raw is not None and raw != "":
            values[field_name] = parse(variable, raw)
    return Settings(**values)


# -- what is in force, for ``mystocks-otel check-config`` ----------------------------------

SECRET_FIELDS = frozenset({"metrics_token"})
_UNSET_MEANS = {
    "service_name": "(unset: OpenTelemetry's default, unknown_service:<executable>)",
    "prometheus_port": "(unset: no standalone port)",
    "metrics_path": "(unset: /metrics)",
    "multiprocess_dir": "(unset: /dev/shm, else the temp directory)",
    "http_buckets": "(unset: the catalog's)",
}


def describe(environ: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """``(variable, value in force, source)`` per variable; source is ``env`` or ``default``.

    Raises :class:`ConfigError` as :func:`load` does. Secret values are never shown.
    """
    env = os.environ if environ is None else environ
    settings = load(env)
    return [(variable, _shown(field_name, getattr(settings, field_name)),
             "env" if env.get(variable) else "default")
            for variable, (field_name, _parse) in _VARIABLES.items()]


def _shown(field_name: str, value: object) -> str:
    if field_name in SECRET_FIELDS:
        return "(set, hidden)" if value else "(unset)"
    if value is None:
        return _UNSET_MEANS.get(field_name, "(unset)")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or "(none)"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


# -- advisories: settings the OpenTelemetry SDK reads itself ----------------------------------
# The SDK drops a malformed value of these with a warning, or silently (the specification asks
# implementations to ignore an invalid value and keep going), so they never stop start-up:
# ``check-config`` lists each, and the first set-up warns once per variable.

_SIGNALS = ("", "METRICS_", "TRACES_", "LOGS_")
_OTLP_SETTINGS = ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "CERTIFICATE", "CLIENT_KEY",
                  "CLIENT_CERTIFICATE", "PROTOCOL", "INSECURE")
KNOWN_OTLP_VARIABLES = frozenset(
    {f"OTEL_EXPORTER_OTLP_{signal}{name}" for signal in _SIGNALS for name in _OTLP_SETTINGS}
    | {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
       "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESOURCE_KEY = re.compile(r"[\x21-\x7e]+")


def _advise_otlp(variable: str, raw: str) -> str | None:
    setting = variable.removeprefix("OTEL_EXPORTER_OTLP_")
    for signal in _SIGNALS[1:]:
        setting = setting.removeprefix(signal)
    value = raw.strip()
    if variable not in KNOWN_OTLP_VARIABLES:
        return "not an OTLP exporter variable (a typo?); it is ignored"
    if setting == "ENDPOINT":
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return "expected an http:// or https:// URL, e.g. http://collector:4318"
    elif setting == "HEADERS":
        parts = [part for part in value.split(",") if part.strip()]
        bad = [part for part in parts
               if "=" not in part or not _HEADER_NAME.fullmatch(part.partition("=")[0].strip())]
        if bad:  # never shown: a header may hold a credential
            return (f"expected comma-separated name=value pairs (values URL-encoded); the SDK "
                    f"drops {len(bad)} malformed pair(s)")
    elif setting == "TIMEOUT":
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not (math.isfinite(number) and number > 0):
            return "expected a positive number (the SDK uses its default, 10 s)"
    elif setting == "COMPRESSION":
        if value.lower() not in ("gzip", "deflate", "none"):
            return "expected gzip, deflate or none"
    elif setting in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
        if not os.path.isfile(value):
            return "expected the path of a readable file; none is there"
    elif setting == "INSECURE":
        if value.lower() not in ("true", "false"):
            return "expected true or false"
    elif setting == "METRICS_TEMPORALITY_PREFERENCE":
        if value.lower() not in ("cumulative", "delta", "lowmemory"):
            return "expected cumulative, delta or lowmemory"
    return None


def _advise_resource(raw: str) -> str | None:
    bad = []
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, _value = part.partition("=")
        if not sep or not _RESOURCE_KEY.fullmatch(key.strip()):
            bad.append(part.strip())
    if bad:
        return (f"expected comma-separated key=value pairs; the SDK drops {len(bad)} malformed "
                f"one(s), e.g. {bad[0][:40]!r}")
    return None


def _advise_host(raw: str) -> str | None:
    import socket

    try:
        socket.getaddrinfo(raw.strip(), None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        return f"does not resolve ({error}); the standalone metrics port cannot be served"
    return None


def advisories(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(variable, what is wrong)`` for each setting the SDK reads itself and would drop or
    ignore: ``OTEL_EXPORTER_OTLP_*``, ``OTEL_RESOURCE_ATTRIBUTES``, and an unresolvable
    ``OTEL_EXPORTER_PROMETHEUS_HOST``. Never raises."""
    env = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []
    for variable in sorted(env):
        raw = env.get(variable) or ""
        if not raw.strip():
            continue
        try:
            if variable.startswith("OTEL_EXPORTER_OTLP_"):
                problem = _advise_otlp(variable, raw)
            elif variable == "OTEL_RESOURCE_ATTRIBUTES":
                problem = _advise_resource(raw)
            elif variable == "OTEL_EXPORTER_PROMETHEUS_HOST" and env.get("OTEL_EXPORTER_PROMETHEUS_PORT"):
                problem = _advise_host(raw)
            else:
                problem = None
        except Exception as error:  # noqa: BLE001 - an advisory never stops anything
            problem = f"could not be checked: {error}"
        if problem:
            found.append((variable, problem))
    return found


def advisory_line(variable: str, problem: str, environ: Mapping[str, str] | None = None) -> str:
    """One line naming the variable (its value too, unless it may hold a secret)."""
    env = os.environ if environ is None else environ
    secret = "HEADERS" in variable or "KEY" in variable
    shown = "(hidden)" if secret else repr((env.get(variable) or "")[:80])
    return f"mystocks-otel: {variable}={shown}: {problem}"
