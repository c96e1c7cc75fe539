"""What each metric reader did last: the honest half of ``/metrics/health``.

OTLP export stays on the SDK's own exporter; :class:`WatchedExporter` wraps it and keeps,
per exporter, the last successful export, the last error and the consecutive failures,
and counts every failure in ``mystocks.telemetry.export_failures``. A failing exporter
turns ``/metrics/health`` to ``degraded`` (still HTTP 200: probes must not restart an app
over its telemetry).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from .instruments import SumRecorder

_log = logging.getLogger(__name__)
EXPORT_FAILURES = "mystocks.telemetry.export_failures"
MAX_ERROR_CHARS = 300
_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")
_GENERIC = "due to timeout, max retries or shutdown"


@dataclass
class ExportStatus:
    """One exporter's record. Times are Unix seconds."""

    exporter: str
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    failures_total: int = 0

    @property
    def state(self) -> str:
        if self.consecutive_failures:
            return "failing"
        return "ok" if self.last_success is not None else "pending"

    def as_dict(self) -> dict:
        return {"state": self.state, "last_success": self.last_success,
                "last_failure": self.last_failure, "last_error": self.last_error,
                "consecutive_failures": self.consecutive_failures,
                "failures_total": self.failures_total}


class ExportStatuses:
    """exporter name -> its status; the latest WatchedExporter of a name wins (one provider
    per process). The process's one instance is ``state.EXPORT_STATUSES``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_name: dict[str, ExportStatus] = {}

    def get(self, name: str) -> ExportStatus | None:
        return self.by_name.get(name)

    def add(self, status: ExportStatus) -> None:
        with self.lock:
            self.by_name[status.exporter] = status

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # a parent's export thread may have held it at the fork

    def reader_states(self, readers, last_collection: dict | None = None) -> dict[str, dict]:
        """``{reader name: state}`` for the readers of the current provider."""
        states = {}
        for name in sorted(readers):
            status = self.by_name.get(name)
            if status is not None:
                with self.lock:
                    states[name] = status.as_dict()
            else:  # a pull reader: it is as healthy as its last scrape
                states[name] = {"state": "ok", "last_collection": last_collection or None}
        return states

    def failing(self, readers) -> list[str]:
        return [name for name in readers
                if (s := self.by_name.get(name)) is not None and s.consecutive_failures]


def describe(error: object) -> str:
    """One line for the health page: type and message (or the logged text), credentials in URLs
    masked, bounded."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = _URL_CREDENTIALS.sub("//***@", " ".join(text.split()))
    return text[:MAX_ERROR_CHARS]


class _FirstProblem(logging.Filter):
    """Keeps the first warning or error an exporter logs during one export, per thread.

    The SDK exporter returns only SUCCESS or FAILURE and logs the reason itself; its first
    message names the root cause (its last one may be a retry artefact such as "timeout 0").
    """

    def __init__(self):
        super().__init__()
        self._local = threading.local()

    def start(self) -> None:
        self._local.capturing, self._local.first = True, None

    def stop(self) -> str | None:
        self._local.capturing = False
        return getattr(self._local, "first", None)

    def filter(self, record: logging.LogRecord) -> bool:
        local = self._local
        if getattr(local, "capturing", False) and local.first is None and record.levelno >= logging.WARNING:
            message = record.getMessage()
            if _GENERIC not in message:  # says nothing of the cause
                local.first = message
        return True  # never hides the record


class WatchedExporter(MetricExporter):
    """Delegates to ``inner`` (the SDK's OTLP exporter) and records each outcome."""

    def __init__(self, inner: MetricExporter, name: str, statuses: ExportStatuses,
                 failures: SumRecorder):
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.status = ExportStatus(name)
        self.statuses = statuses
        self.failures = failures  # mystocks.telemetry.export_failures
        self._problems = _FirstProblem()
        self._logger = logging.getLogger(type(inner).__module__)  # where the SDK logs why
        self._logger.addFilter(self._problems)
        self._local = threading.local()
        self._watch_client()
        statuses.add(self.status)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        self._local.result = None
        self._problems.start()
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as error:  # noqa: BLE001 - the reader thread must go on
            self._problems.stop()
            self._failed(describe(error))
            return MetricExportResult.FAILURE
        problem = self._problems.stop()
        if result is MetricExportResult.SUCCESS:
            self._succeeded()
        else:
            self._failed(describe(problem or self._client_error() or "export failed"))
        return result

    def _watch_client(self) -> None:
        # When the SDK gives up at once (its first back-off is longer than its timeout), it logs
        # no reason; its HTTP client's result still holds the error (SDK 1.45: ``_client``).
        client = getattr(self.inner, "_client", None)
        export = getattr(client, "export", None)
        if not callable(export):
            return

        def export_and_keep(data, *args, **kwargs):
            result = export(data, *args, **kwargs)
            self._local.result = result
            return result

        client.export = export_and_keep

    def _client_error(self) -> str | None:
        result = getattr(self._local, "result", None)
        if result is None:
            return None
        if getattr(result, "error", None) is not None:
            return describe(result.error)
        status = getattr(result, "status_code", None)
        return f"HTTP {status} {getattr(result, 'reason', '') or ''}".strip() if status else None

    def _succeeded(self) -> None:
        with self.statuses.lock:
            self.status.last_success = time.time()
            self.status.consecutive_failures = 0

    def _failed(self, error: str) -> None:
        with self.statuses.lock:
            self.status.last_failure = time.time()
            self.status.last_error = error
            self.status.consecutive_failures += 1
            self.status.failures_total += 1
        self.failures.add(1, self.status.exporter)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, *args, **kwargs) -> None:
        self._logger.removeFilter(self._problems)
        self.inner.shutdown(*args, **kwargs)  # the reader passes timeout=..., as it does to any exporter


def watch(exporter: MetricExporter, name: str, statuses: ExportStatuses,
          failures: SumRecorder) -> WatchedExporter:
    return WatchedExporter(exporter, name, statuses, failures)
