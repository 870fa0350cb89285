"""A run in its trace: the stored trace context its callback reads, and the attributes
of its root span ``test_run`` (see :mod:`rhesis_pipeline.tracing`)."""

from __future__ import annotations

from typing import Any

from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.tracing.completion import Completion
from rhesis_pipeline.tracing.context import RunTrace
from rhesis_pipeline.tracing.setup import tracing_enabled


def completion(run_id: str) -> Completion:
    """The span of run *run_id*'s callback (a no-op when this process does not trace):
    its trace context is read from the run's row only when it does."""
    if not tracing_enabled():
        return Completion(run_id, None, None)
    with db.connect() as conn:
        row = conn.execute(Q["run_trace"], {"run_id": str(run_id)}).one_or_none()
    if row is None:
        return Completion(run_id, None, None)
    return Completion(run_id, RunTrace.stored(run_id, row.trace_context), row.created_at)


def root_attributes(run: Run) -> dict[str, Any]:
    """The attributes of finished run *run*'s root span: its name, organization, total,
    final status, counts and callback latency."""
    return {
        "rhesis.run.name": run.name,
        "rhesis.organization.id": run.organization_id,
        "rhesis.run.total": run.total,
        "rhesis.run.status": run.status.value,
        "rhesis.run.passed": run.passed,
        "rhesis.run.failed": run.failed,
        "rhesis.run.errored": run.errored,
        "rhesis.run.lost": run.lost,
        "rhesis.run.cancelled": run.cancelled,
        "rhesis.run.callback_latency_ms": run.callback_latency_ms,
    }
