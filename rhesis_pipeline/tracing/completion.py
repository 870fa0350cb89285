"""The callback's span ``collect_results`` and the run's root span ``test_run``, made
when the run is final with the ids decided at its launch."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from rhesis_pipeline.tracing.context import RunTrace
from rhesis_pipeline.tracing.ids import preset_ids
from rhesis_pipeline.tracing.setup import tracer
from rhesis_pipeline.tracing.spans import CurrentSpan, link, ns, span_context


class Completion(CurrentSpan):
    """The callback's span ``collect_results``, a child of the run's root span; on exit,
    if :meth:`finished` was told the run's final state, the root span ``test_run`` itself
    (from *created_at* to now, with the run's preset ids)."""

    def __init__(self, run_id: str, stored: RunTrace | None, created_at: datetime | None):
        self.run_id, self.stored, self.created_at = str(run_id), stored, created_at
        self.found = tracer() if stored is not None else None
        self.final: dict[str, Any] | None = None

    def __enter__(self) -> Completion:
        if self.found is not None and self.stored is not None:
            context = span_context(self.stored.root, self.stored.tracestate)
            self._enter(
                self.found.start_span(
                    "collect_results", context=context, attributes={"rhesis.run.id": self.run_id}
                )
            )
        return self

    def finished(self, attributes: Mapping[str, Any] | None) -> None:
        """The run's final attributes (status, counts …), or None: it was final already
        (a second delivery of the callback), so no root span is made."""
        if self.span is None:
            return
        if attributes is None:
            self.span.set_attribute("rhesis.callback.duplicate", True)
            return
        self.final = {k: v for k, v in attributes.items() if v is not None}

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(kind, exc, tb)
        if self.final is not None and self.stored is not None:
            _emit_root(self.found, self.stored, self.created_at, self.run_id, self.final)


def _emit_root(
    found: Any, stored: RunTrace, created_at: datetime | None, run_id: str, final: dict[str, Any]
) -> None:
    if not stored.root.sampled:  # decided at launch: the run is not traced
        return
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attributes = {"rhesis.run.id": run_id, **final}
    links = []
    launched_by = stored.parent or stored.link
    if launched_by is not None:
        attributes["rhesis.launched_by.trace_id"] = f"{launched_by.trace_id:032x}"
        attributes["rhesis.launched_by.span_id"] = f"{launched_by.span_id:016x}"
    if stored.link is not None:
        links.append(link(stored.link, **{"rhesis.link": "launched_by"}))
    parent = (
        span_context(stored.parent, stored.tracestate)
        if stored.parent is not None
        else otel_context.Context()
    )
    with preset_ids(stored.root.trace_id, stored.root.span_id):
        root = found.start_span(
            "test_run",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
            start_time=ns(created_at),
        )
    if final.get("rhesis.run.status") == "FAILED":
        root.set_status(Status(StatusCode.ERROR, "no test of the run executed"))
    root.end()
