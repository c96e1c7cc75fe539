"""The request's server span, recorded without the SDK span's per-span machinery.

An SDK ``Span`` costs about 140 Python calls per request: a lock and a ``BoundedAttributes``
(with its own lock) made at start, every attribute cleaned, the processors' ``on_start``, a
second lock at end and a ``ReadableSpan`` copied for the processors. Tail sampling then drops
nine traces in ten (:mod:`.sampling`), so most of that work is thrown away. Under uvicorn it
was most of what tracing cost (BENCHMARKS.md, issue 16).

:class:`RequestSpan` is the server span our ASGI layer makes when the tracer provider is one we
built and our tail sampler is its only processor (:meth:`Roots.start` checks that on every
request). To the app it is an ordinary recording span, current while the request runs:

- ``is_recording()`` is true until it ends; ``set_attribute``, ``set_attributes``,
  ``add_event``, ``add_link``, ``record_exception``, ``set_status`` and ``update_name`` are
  recorded and exported with the span, with the SDK's own limits (``OTEL_SPAN_*_LIMIT``, the
  SDK's ``BoundedAttributes`` and ``BoundedList`` once the app adds anything), and are ignored
  with the SDK's warning after the end;
- the configured sampler (``OTEL_TRACES_SAMPLER``) decides as it does for an SDK span, with
  the same arguments; its attributes and trace state are kept. The default one
  (``parentbased_always_on``) is not asked for a request without a parent: its answer is
  "record and sample";
- children (SQL, Redis, the app's own spans) are SDK spans of the same trace, parented on it;
- to the exporter it is a ``ReadableSpan`` like any other.

What it does without: the locks (a request's span is written by its own task, and by the
worker thread a sync endpoint runs in while that task waits; once the app writes attributes,
the SDK's ``BoundedAttributes`` brings its own), the cleaning of our own attributes (their
values are ours: strings and integers, cut only under a length limit), the copy at the end (it
is itself a ``ReadableSpan``, frozen once ended), the processors' loop (it calls the tail
sampler, the only processor, directly) and, until someone asks for it, the ``SpanContext``
object (the exemplar and the tail sampler read the ids it keeps). The tail sampler judges it
from the request's facts (duration, status, method, route) handed over at its end, not by
reading its attributes back.

With a span processor of anyone else's on the provider, or a provider that is not ours, the
SDK's tracer makes the span as before (:meth:`Roots.start` returns None).
"""

from __future__ import annotations

import logging
import traceback
from time import time_ns

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_TYPE)
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

_log = logging.getLogger("opentelemetry.sdk.trace")  # the SDK's warnings, under the SDK's name
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class Roots:
    """Makes :class:`RequestSpan` roots for one tracer of ours (see the module docstring).

    ``tracer``: the SDK ``Tracer`` the spans would otherwise come from; ``sampler``: our tail
    sampler, the provider's only span processor when the fast path is taken.
    """

    def __init__(self, tracer, sampler):
        self.tracer = tracer
        self.sampler = sampler
        processors = getattr(tracer.span_processor, "_span_processors", None)
        #: the provider's processors when ours is the only one (else None): compared by
        #: identity on every request (``add_span_processor`` replaces the tuple)
        self._only_ours = processors if processors == (sampler,) else None
        self.limits = tracer._span_limits  # noqa: SLF001 - the provider's OTEL_SPAN_* limits
        self.scope = tracer._instrumentation_scope  # noqa: SLF001
        self._ids = tracer.id_generator
        #: a root's flags under the default sampler (parentbased_always_on: a root is sampled)
        self._root_flags = (TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
                            if self._ids.is_trace_id_random() else _SAMPLED)
        #: our own attributes need the SDK's cleaning only under a length or count limit
        self.bound_own = limits_apply(self.limits)

    def usable(self) -> bool:
        """Ours is still the provider's only span processor, and the tracer is enabled."""
        tracer = self.tracer
        processors = getattr(tracer.span_processor, "_span_processors", None)
        return (processors is not None and processors is self._only_ours
                and tracer._is_enabled())  # noqa: SLF001

    def start(self, name: str, parent, attributes: dict):
        """The request's span under ``parent`` (a Context with the remote parent, or None),
        or None when the fast path does not apply (the caller then asks the SDK's tracer)."""
        if not self.usable():
            return None
        if parent is None and self.tracer.sampler is DEFAULT_ON:
            # the default sampler's answer for a root, without asking it: record and sample
            trace_id = self._ids.generate_trace_id()
            span = RequestSpan(self, name, None, None, attributes,
                               (trace_id, self._ids.generate_span_id()), self._root_flags)
        else:
            span = self._sampled(name, parent, attributes)
            if type(span) is not RequestSpan or span.ids is None:
                return span  # not recorded, or recorded and never exported (RECORD_ONLY)
            trace_id = span.ids[0]
        self.sampler.begin(trace_id)
        return span

    def _sampled(self, name: str, parent, attributes: dict):
        """The span as the configured sampler decides it (OTEL_TRACES_SAMPLER; any parent)."""
        tracer, ids = self.tracer, self._ids
        parent_context = trace_api.get_current_span(parent).get_span_context()
        if not parent_context.is_valid:
            parent_context = None
            trace_id = ids.generate_trace_id()
        else:
            trace_id = parent_context.trace_id
        result = tracer.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER, attributes, ())
        decision = result.decision
        flags = _SAMPLED if decision.is_sampled() else _NOT_SAMPLED
        random = (ids.is_trace_id_random() if parent_context is None
                  else parent_context.trace_flags.random_trace_id)
        if random:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                              trace_flags=flags, trace_state=result.trace_state)
        if not decision.is_recording():
            return trace_api.NonRecordingSpan(context)
        if result.attributes:
            attributes.update(result.attributes)
        return RequestSpan(self, name, context, parent_context, attributes,
                           (trace_id, context.span_id), flags)


_OWN_ATTRIBUTES = 9  # the most our layer sets (tracing.ServerSpans)


def limits_apply(limits) -> bool:
    """Whether span limits could change our own attributes (a length limit, or a count limit
    below the number we set)."""
    return limits.max_span_attribute_length is not None or (
        limits.max_span_attributes is not None and limits.max_span_attributes < _OWN_ATTRIBUTES)


def _while_recording(warning: str):
    """Runs the method while the span records; afterwards, the SDK's own warning for it."""
    def decorate(method):
        def guarded(self, *args, **kwargs):
            if self._end_time is None:
                return method(self, *args, **kwargs)
            if "%s" in warning:
                _log.warning(warning, method.__name__)
            else:
                _log.warning(warning)
            return None

        guarded.__name__ = method.__name__
        guarded.__doc__ = method.__doc__
        return guarded

    return decorate


# the SDK's words: its attribute setters check the end themselves, the rest by a decorator
# that names the private method it wraps
_ENDED_ATTRIBUTE = "Setting attribute on ended span."
_ENDED_EVENT = "Tried calling _add_event on an ended span."
_ENDED_LINK = "Tried calling _add_link on an ended span."
_ENDED = "Tried calling %s on an ended span."


class RequestSpan(trace_api.Span, ReadableSpan):
    """A request's server span: see the module docstring. Made by :class:`Roots` only."""

    # ReadableSpan's fields that start the same in every request span
    _kind = SpanKind.SERVER
    _end_time = None
    _status = _UNSET
    _events = ()
    _links = ()

    def __init__(self, roots: Roots, name: str, context: SpanContext | None, parent,
                 attributes: dict, ids: tuple[int, int], flags: TraceFlags):
        # ReadableSpan's fields, set directly: its __init__ would build a Resource when none
        # is given, and the provider's can change (a forked worker's process.pid)
        self._roots = roots
        self._name = name
        #: the SpanContext; None until first asked for (made from ``ids`` and ``flags``)
        self._context = context
        self._flags = flags
        #: ``(trace_id, span_id)`` when sampled (exemplars and the tail sampler read them
        #: without a SpanContext), else None
        self.ids = ids if flags.sampled else None
        self._parent = parent
        self._start_time = time_ns()
        #: a plain dict until the app adds its own attributes (then the SDK's bounded mapping)
        self._attributes = attributes
        if roots.bound_own:
            self._bound()

    # -- ReadableSpan --------------------------------------------------------------------------
    @property
    def context(self) -> SpanContext:
        return self.get_span_context()

    @property
    def resource(self):
        return self._roots.tracer.resource

    @property
    def instrumentation_scope(self):
        return self._roots.scope

    @property
    def instrumentation_info(self):
        return None

    def __repr__(self):
        return f'{type(self).__name__}(name="{self._name}", context={self.get_span_context()})'

    # -- trace_api.Span ------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:  # a sampled root of the default path: ids are set
            context = self._context = SpanContext(self.ids[0], self.ids[1], is_remote=False,
                                                  trace_flags=self._flags)
        return context

    def is_recording(self) -> bool:
        return self._end_time is None

    _plain = True  # the attributes are still our own plain dict

    def _bound(self) -> BoundedAttributes:
        """The attributes as the SDK's bounded, cleaning mapping (once anyone else writes)."""
        if self._plain:
            limits = self._roots.limits
            self._attributes = BoundedAttributes(limits.max_span_attributes, self._attributes,
                                                 immutable=False,
                                                 max_value_len=limits.max_span_attribute_length)
            self._plain = False
        return self._attributes

    @_while_recording(_ENDED_ATTRIBUTE)
    def set_attributes(self, attributes) -> None:
        self._bound()._set_items(attributes)  # noqa: SLF001 - cleaned and bounded by the SDK

    @_while_recording(_ENDED_ATTRIBUTE)
    def set_attribute(self, key: str, value) -> None:
        self._bound()[key] = value

    @_while_recording(_ENDED_EVENT)
    def add_event(self, name: str, attributes=None, timestamp: int | None = None) -> None:
        limits = self._roots.limits
        if type(self._events) is not BoundedList:
            self._events = BoundedList(limits.max_events)
        self._events.append(Event(name, BoundedAttributes(
            limits.max_event_attributes, attributes, max_value_len=limits.max_attribute_length,
            immutable=True), timestamp))

    @_while_recording(_ENDED_LINK)
    def add_link(self, context: SpanContext, attributes=None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        limits = self._roots.limits
        if type(self._links) is not BoundedList:
            self._links = BoundedList(limits.max_links)
        self._links.append(trace_api.Link(context, BoundedAttributes(
            limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length,
            immutable=True)))

    @_while_recording(_ENDED)
    def update_name(self, name: str) -> None:
        self._name = name

    @_while_recording(_ENDED)
    def set_status(self, status, description: str | None = None) -> None:
        # the SDK's rules: OK is final, UNSET is ignored, a Status object takes no description
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _log.warning("Description %s ignored. Use either `Status` or "
                             "`(StatusCode, Description)`", description)
            self._status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes=None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """The SDK's exception event: type, message, stack trace, escaped."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling end() on an ended span.")
            return
        self._ended(end_time if end_time is not None else time_ns())

    def finish(self, name: str | None, attributes: dict, error: bool, facts: tuple) -> None:
        """Our layer's end of the request, in one call: the name with the route, our
        response attributes (valid values: not cleaned), status ERROR on ``error``, and the
        tail sampler's ``(status, method, route)`` facts of the request."""
        if self._end_time is not None:
            return
        if name is not None:
            self._name = name
        if self._plain:
            self._attributes.update(attributes)
        else:
            self._attributes._set_items(attributes)  # noqa: SLF001 - the SDK's bulk set
        if error and self._status.status_code is not StatusCode.OK:
            self._status = _ERROR
        self._ended(time_ns(), facts)

    def _ended(self, end_time: int, facts: tuple | None = None) -> None:
        self._end_time = end_time
        if not self._plain:
            self._attributes._immutable = True  # noqa: SLF001 - as the SDK freezes its spans
        if self.ids is not None:  # sampled: if kept, this object goes to the batch processor
            if facts is None:  # ended by the app: the facts are in its attributes
                facts = _facts(self._attributes)
            self._roots.sampler.root_ended(self, self.ids[0],
                                           self._status.status_code is StatusCode.ERROR,
                                           (end_time - self._start_time, *facts))


def _facts(attributes) -> tuple:
    """``(status, method, route)`` from a server span's attributes."""
    def get(name):
        return attributes[name] if name in attributes else None

    status = get("http.response.status_code")
    return (status if isinstance(status, int) else None, get("http.request.method"),
            get("http.route"))
