"""Tail sampling in the process: a trace is kept or dropped when its local root span ends.

:class:`TailSampler` is a ``SpanProcessor`` that sits in front of the ``BatchSpanProcessor``.
It buffers each trace's ended spans until the trace's *local root* (the first span of the
trace in this process: a server span, or a job's first span) ends, then decides once
(:class:`Policy`):

- keep every trace with an error: a span whose status is ERROR, or a 5xx on the root;
- keep every trace whose root took longer than ``traces_slow_seconds`` (the latency SLO);
- keep every trace whose root's ``"METHOD route-template"`` matches ``traces_keep_routes``
  (the order-placing routes);
- keep ``traces_keep_ratio`` of the rest, decided from the trace id alone, by the rule of the
  SDK's ``TraceIdRatioBased`` (the low 64 bits below ``ratio * 2**64``): every worker, every
  replica and every service with the same ratio keeps the same ordinary traces.

Kept spans go on to the batch processor; the others are dropped without a sound.

**Why in the process, not (only) in the Collector.** The Collector's ``tail_sampling``
processor is in our build, and a deployment may add it. But an exemplar on ``/metrics`` is
written by this process, and it must only ever point at a trace that is stored. Only the
process that decides knows, at the moment it decides, which latency and query exemplars
belong to the trace: each exemplar is recorded as a *candidate* of its trace
(:meth:`TailSampler.exemplar_gate`) and committed to the histogram when the trace is kept,
forgotten when it is dropped. A Collector-side decision would leave exemplars pointing at
traces it later dropped. Deciding here also means a dropped trace costs no export, no network
and no Collector memory.

**Several workers.** Each worker decides for the spans it made. The ratio part is the same
everywhere (the trace id decides). Errors and slowness are seen where they happen: a trace
that crosses two services is kept whole where it failed, and by ratio elsewhere.

**Bounded.** At most ``max_traces`` traces are in flight (the oldest is given up, its spans
dropped); at most ``max_spans`` spans are buffered per trace (a long WebSocket connection's
message spans, say); at most ``max_candidates`` exemplar candidates per trace. Every span
dropped that way is counted in ``mystocks.telemetry.dropped_spans{reason}``; the batch
processor's queue-full drops are counted there too (:func:`count_queue_drops`).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict
from typing import Callable

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

_log = logging.getLogger(__name__)

DROPPED_SPANS = "mystocks.telemetry.dropped_spans"
MAX_TRACES = 4096          # traces in flight in one process
MAX_SPANS = 512            # spans buffered per trace
MAX_CANDIDATES = 64        # exemplar candidates per trace
MAX_DECIDED = 8192         # recent decisions remembered, for spans that end after their root
_RATIO_BITS = (1 << 64) - 1
_GIVEN_UP = "given up"  # a decision: dropped because too many traces were in flight
#: TracerProvider -> its TailSampler, for the providers we built (telemetry.build_tracer_provider)
SAMPLERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def gate_for(tracer_provider):
    """The exemplar gate of ``tracer_provider``'s tail sampler; None for a provider we did not
    build (the app's own: its exemplars are kept as they are recorded)."""
    sampler = SAMPLERS.get(tracer_provider) if tracer_provider is not None else None
    return sampler.exemplar_gate if sampler is not None else None


class Policy:
    """Which traces to keep: see the module docstring."""

    def __init__(self, ratio: float = 0.1, slow_seconds: float = 1.0, keep_routes: str = ""):
        self.ratio = ratio
        self.bound = round(ratio * (1 << 64))  # TraceIdRatioBased's bound
        self.slow_ns = slow_seconds * 1e9
        parts = [p.strip() for p in keep_routes.split(",") if p.strip()]
        self.keep_routes = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        return cls(settings.traces_keep_ratio, settings.traces_slow_seconds, settings.traces_keep_routes)

    def by_ratio(self, trace_id: int) -> bool:
        """The ratio part, from the trace id alone (the same rule as ``TraceIdRatioBased``)."""
        return (trace_id & _RATIO_BITS) < self.bound

    def keep(self, root: ReadableSpan, error: bool, trace_id: int | None = None) -> bool:
        """Whether the trace of the local root ``root`` is kept (``error``: a span of the
        trace failed; ``trace_id``: the root's, when the caller has it at hand)."""
        attributes = root.attributes or {}
        end, start = root.end_time, root.start_time
        status = _either(attributes, "http.response.status_code", "http.status_code")
        try:
            status = None if status is None else int(status)
        except (TypeError, ValueError):
            status = None
        return self.keep_request(root.context.trace_id if trace_id is None else trace_id, error,
                                 end - start if end is not None and start is not None else 0,
                                 status, _either(attributes, "http.request.method", "http.method"),
                                 _get(attributes, "http.route"))

    def keep_request(self, trace_id: int, error: bool, duration_ns: int, status: int | None,
                     method: str | None, route: str | None) -> bool:
        """:meth:`keep` from the root's facts: the HTTP status, method and route template."""
        if (error or duration_ns > self.slow_ns or (trace_id & _RATIO_BITS) < self.bound
                or (status is not None and status >= 500)):
            return True
        return (self.keep_routes is not None and route is not None
                and self.keep_routes.search(f"{method or ''} {route}") is not None)


def _get(attributes, name: str):
    """``attributes.get(name)`` without the exception a missing key costs inside the SDK's
    attribute mapping."""
    return attributes[name] if name in attributes else None


def _either(attributes, name: str, old_name: str):
    """The stable attribute, else its old name."""
    return attributes[name] if name in attributes else _get(attributes, old_name)


def _failed(span: ReadableSpan) -> bool:
    return span.status is not None and span.status.status_code is StatusCode.ERROR


class _Trace:
    __slots__ = ("roots", "spans", "error", "candidates", "overflow")

    def __init__(self):
        self.roots = 0          # local roots open (a trace can enter the process twice)
        self.spans: list = []
        self.error = False
        self.candidates: list = []
        self.overflow = 0       # spans dropped because the trace was too long


class TailSampler(SpanProcessor):
    """Buffers each trace until its local root ends, then forwards it to ``downstream`` or not.

    ``count(reason, n)`` counts dropped spans (default: nothing). Thread-safe; the work on the
    request path is a dict lookup and a list append per span.
    """

    def __init__(self, downstream: SpanProcessor, policy: Policy, *,
                 count: Callable[[str, int], None] | None = None,
                 max_traces: int = MAX_TRACES, max_spans: int = MAX_SPANS,
                 max_candidates: int = MAX_CANDIDATES, max_decided: int = MAX_DECIDED):
        self.downstream = downstream
        self.policy = policy
        self._count = count or (lambda reason, n: None)
        self.max_traces, self.max_spans = max_traces, max_spans
        self.max_candidates, self.max_decided = max_candidates, max_decided
        self._lock = threading.Lock()
        self._traces: "OrderedDict[int, _Trace]" = OrderedDict()
        self._decided: "OrderedDict[int, bool]" = OrderedDict()

    # -- the span processor ----------------------------------------------------------------
    def on_start(self, span, parent_context=None) -> None:
        context = span.get_span_context()
        if not context.trace_flags.sampled:
            return
        parent = span.parent
        if parent is None or parent.is_remote:  # a local root (a child finds its root's entry)
            self.begin(context.trace_id)

    def begin(self, trace_id: int) -> None:
        """A local root of ``trace_id`` started (the request span calls this directly)."""
        evicted = None
        with self._lock:
            trace = self._traces.get(trace_id)
            if trace is None:
                trace = self._traces[trace_id] = _Trace()
                if len(self._traces) > self.max_traces:
                    evicted = self._traces.popitem(last=False)
            trace.roots += 1
        if evicted is not None:
            self._give_up(*evicted)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        parent = span.parent
        self._ended(span, context.trace_id, parent is None or parent.is_remote, _failed(span))

    def root_ended(self, span: ReadableSpan, trace_id: int, failed: bool, facts: tuple) -> None:
        """A sampled local root of ``trace_id`` ended, its status ERROR if ``failed``; its
        ``facts`` are :meth:`Policy.keep_request`'s ``(duration_ns, status, method, route)``
        (the request span calls this directly)."""
        self._ended(span, trace_id, True, failed, facts)

    def _ended(self, span: ReadableSpan, trace_id: int, is_root: bool, failed: bool,
               facts: tuple | None = None) -> None:
        with self._lock:
            trace = self._traces.get(trace_id)
            if trace is None:
                decided = self._decided.get(trace_id)
            else:
                decided = None
                if failed:
                    trace.error = True
                if is_root:
                    trace.roots -= 1
                if not is_root or trace.roots > 0:
                    if len(trace.spans) < self.max_spans:
                        trace.spans.append(span)
                    else:
                        trace.overflow += 1
                    return
                # the root ended: decided now, under the same lock, so that no span of the
                # trace can find it neither in flight nor decided
                del self._traces[trace_id]
                keep = self._judge(span, trace.error, trace_id, facts)
                self._remember(trace_id, keep)
        if trace is None:  # late (ended after its root) or given up: follow the decision
            if decided is _GIVEN_UP:
                self._count("buffer_full", 1)
            elif decided is None and not is_root:
                self._count("trace_given_up", 1)  # its trace was forgotten long ago
            elif decided is None:
                decided = self._judge(span, failed, trace_id, facts)
            if decided is True:
                self.downstream.on_end(span)
            return
        self._forward(trace, span, keep)

    def _judge(self, root: ReadableSpan, error: bool, trace_id: int, facts: tuple | None) -> bool:
        try:
            if facts is not None:
                return self.policy.keep_request(trace_id, error, *facts)
            return self.policy.keep(root, error, trace_id)
        except Exception:  # noqa: BLE001 - a bad attribute must not lose the trace silently
            _log.debug("mystocks-otel: tail sampling failed; keeping the trace", exc_info=True)
            return True

    def _remember(self, trace_id: int, decision) -> None:
        """Called under our lock: the decision, for the spans that end after their root."""
        decided = self._decided
        decided[trace_id] = decision
        if len(decided) > self.max_decided:
            decided.popitem(last=False)

    def _forward(self, trace: _Trace, root: ReadableSpan, keep: bool) -> None:
        """Outside our lock: the kept trace goes downstream, its exemplars are committed."""
        if trace.overflow:
            self._count("trace_too_long", trace.overflow)
        if keep:
            for span in trace.spans:
                self.downstream.on_end(span)
            self.downstream.on_end(root)
            for commit in trace.candidates:  # outside our lock: a commit takes a recorder's
                commit()

    def _give_up(self, trace_id: int, trace: _Trace) -> None:
        """Too many traces in flight: the oldest is dropped, spans and exemplar candidates."""
        with self._lock:
            self._remember(trace_id, _GIVEN_UP)
        dropped = len(trace.spans) + trace.overflow
        if dropped:
            self._count("buffer_full", dropped)

    def shutdown(self) -> None:
        self.downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.downstream.force_flush(timeout_millis)

    # -- exemplars -------------------------------------------------------------------------
    def exemplar_gate(self, trace_id: int, commit: Callable[[], None]) -> bool:
        """Whether an exemplar of ``trace_id`` may be kept now. While the trace is in flight,
        ``commit`` is kept as a candidate and called if the trace is kept (False is returned);
        a decided trace answers its decision; an unknown one (given up) answers False."""
        with self._lock:
            trace = self._traces.get(trace_id)
            if trace is None:
                return self._decided.get(trace_id) is True
            if len(trace.candidates) < self.max_candidates:
                trace.candidates.append(commit)
            return False

    def in_flight(self) -> int:
        with self._lock:
            return len(self._traces)


# -- the batch processor's own drops ----------------------------------------------------------
class _DropCounter:
    """Stands in for the SDK's processor metrics object (``ProcessorMetricsT``): counts the
    batch processor's queue-full and after-shutdown drops in our catalog metric."""

    def __init__(self, inner, count: Callable[[str, int], None]):
        self._inner, self._count = inner, count

    def register_queue_size(self, get_queue_size) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        self._count(error_type, count)
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)


class _QueueFullLines(logging.Filter):
    """Drops the SDK's "Queue full, dropping ..." warning, written once per lost item on the
    request's own thread: with a dead Collector that is a log record per request. Ours count
    them instead (``dropped_spans``/``dropped_log_records{reason="queue_full"}``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Queue full, dropping"))


_SDK_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"


def count_queue_drops(batch_processor, count: Callable[[str, int], None]) -> bool:
    """Count the drops of an SDK ``BatchSpanProcessor`` or ``BatchLogRecordProcessor`` (their
    queue is bounded by ``max_queue_size``; a full queue drops the oldest item). The SDK
    reports them only through its internal metrics, off by default, so the processor's metrics
    object (SDK 1.45, pinned) is wrapped. Returns False when the SDK's layout differs."""
    inner = getattr(batch_processor, "_batch_processor", None)
    metrics = getattr(inner, "_metrics", None)
    if metrics is None or not hasattr(metrics, "drop_items"):
        return False
    inner._metrics = _DropCounter(metrics, count)
    sdk_logger = logging.getLogger(_SDK_BATCH_LOGGER)
    if not any(isinstance(f, _QueueFullLines) for f in sdk_logger.filters):
        sdk_logger.addFilter(_QueueFullLines())
    return True


class CountingExporter:
    """Wraps a span or log exporter: a failed export (a dead Collector, after the exporter's
    own retries) counts its items as dropped, reason ``export_failed``. Everything else is
    the wrapped exporter's."""

    def __init__(self, exporter, count: Callable[[str, int], None]):
        self._exporter, self._count = exporter, count

    def export(self, batch):
        result = self._exporter.export(batch)
        if getattr(result, "name", "") == "FAILURE":
            self._count("export_failed", len(batch))
        return result

    def shutdown(self, *args, **kwargs):
        return self._exporter.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self._exporter, "force_flush", None)
        return flush(timeout_millis) if flush is not None else True

    def __getattr__(self, name):
        return getattr(self._exporter, name)
