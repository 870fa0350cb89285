"""What every span of a run is built from (see :mod:`rhesis_pipeline.tracing`): the
remote context of a run's root span, links, and :class:`CurrentSpan`, a span made current
on entry and ended on exit. The spans themselves, one module each:

* :mod:`.launch` — ``launch_test_run`` and the run's trace it decides;
* :mod:`.attempts` — ``test_attempt`` (and ``endpoint_budget``), and the lost attempts the
  rescuer emits;
* :mod:`.http` — the HTTP client span, whose context goes to the endpoint;
* :mod:`.completion` — ``collect_results`` and the run's root span ``test_run``.

Every one is cheap when the process does not trace: nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from rhesis_pipeline.tracing.context import RunTrace, SpanRef


def span_context(ref: SpanRef, tracestate: str = "") -> Any:
    """An OpenTelemetry Context whose current span is the remote span *ref*."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    state = TraceState.from_header([tracestate]) if tracestate else None
    flags = TraceFlags(TraceFlags.SAMPLED if ref.sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(SpanContext(ref.trace_id, ref.span_id, True, flags, state))
    return trace.set_span_in_context(span)


#: OpenTelemetry Contexts of runs' root spans, by (run id, traceparent, tracestate): every
#: attempt of a run has the same parent (parsing and building it was a fifth of a span's
#: cost). Bounded: cleared when full.
_run_contexts: dict[tuple[str | None, ...], Any] = {}
_RUN_CONTEXTS_MAX = 4096


def run_context(run_id: str, carrier: Mapping[str, Any] | None) -> Any:
    """The Context whose current span is run *run_id*'s root, from a message's options."""
    values = (carrier.get("traceparent"), carrier.get("tracestate")) if carrier else ()
    key = (run_id, *(v if isinstance(v, str) else None for v in values))
    found = _run_contexts.get(key)
    if found is None:
        parent = RunTrace.stored(run_id, carrier)
        found = span_context(parent.root, parent.tracestate)
        if len(_run_contexts) >= _RUN_CONTEXTS_MAX:
            _run_contexts.clear()
        _run_contexts[key] = found
    return found


def link(ref: SpanRef, **attributes: Any) -> Any:
    from opentelemetry.trace import Link

    return Link(remote(ref), attributes or None)


def remote(ref: SpanRef) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    flags = TraceFlags(TraceFlags.SAMPLED if ref.sampled else TraceFlags.DEFAULT)
    return SpanContext(ref.trace_id, ref.span_id, True, flags)


def ns(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1e9)


class CurrentSpan:
    """A span made current on entry, ended on exit (an exception recorded on it)."""

    span: Any = None
    _token: Any = None

    def _enter(self, span: Any) -> None:
        from opentelemetry import context, trace

        self.span = span
        self._token = context.attach(trace.set_span_in_context(span))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        if span is None:
            return
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        if exc is not None and not isinstance(exc, GeneratorExit):
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
        span.end()
        if self._token is not None:
            context.detach(self._token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current here, for log lines; None when the
    process does not trace or no span is current."""
    from rhesis_pipeline.tracing.setup import tracer

    if tracer() is None:
        return None
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None
    return f"{current.trace_id:032x}", f"{current.span_id:016x}"
