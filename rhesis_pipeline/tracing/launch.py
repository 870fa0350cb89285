"""The span of a submission, ``launch_test_run``, and the trace it decides for the run
(``RHESIS_TRACE_PARENT``: linked to the launching span, its child, or neither)."""

from __future__ import annotations

from typing import Any

from rhesis_pipeline.tracing.context import RunTrace, SpanRef, root_span_id, run_trace_id
from rhesis_pipeline.tracing.setup import tracer
from rhesis_pipeline.tracing.spans import CurrentSpan, link


class Launch(CurrentSpan):
    """The span of a submission, and the run's trace it decides (``trace``: None when
    the process does not trace — the run then carries nothing)."""

    def __init__(self, run_id: str, mode: str) -> None:
        self.run_id, self.mode = str(run_id), mode
        self.trace: RunTrace | None = None

    def __enter__(self) -> Launch:
        found = tracer()
        if found is None:
            return self
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        current = trace.get_current_span().get_span_context()
        caller = (
            SpanRef(current.trace_id, current.span_id, bool(current.trace_flags.sampled))
            if current.is_valid
            else None
        )
        state = current.trace_state.to_header() if current.is_valid else ""
        root_id = root_span_id(self.run_id)
        if self.mode == "child" and caller is not None:
            self.trace = RunTrace(SpanRef(caller.trace_id, root_id, caller.sampled), state,
                                  parent=caller)  # fmt: skip
        else:
            trace_id = run_trace_id(self.run_id)
            root = SpanRef(trace_id, root_id, _sampled(found, trace_id))
            self.trace = RunTrace(root, link=caller if self.mode == "link" else None)
        self._enter(
            found.start_span(
                "launch_test_run",
                kind=SpanKind.PRODUCER,
                links=[link(self.trace.root, **{"rhesis.link": "run"})],
                attributes={
                    "rhesis.run.id": self.run_id,
                    "rhesis.run.trace_id": f"{self.trace.root.trace_id:032x}",
                },
            )
        )
        return self

    def submitted(self, total: int, organization: str | None) -> None:
        if self.span is not None:
            self.span.set_attribute("rhesis.run.total", total)
            if organization:
                self.span.set_attribute("rhesis.organization.id", str(organization))


def _sampled(found: Any, trace_id: int) -> bool:
    """Whether the tracer's sampler keeps a new trace *trace_id* (the run's root)."""
    sampler = getattr(found, "sampler", None)
    if sampler is None:
        return True
    return bool(sampler.should_sample(None, trace_id, "test_run").decision.is_sampled())
