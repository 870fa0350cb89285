"""One run in detail: its counts and timing, its queue messages, optionally every test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rhesis_pipeline.monitor.common import iso, parse_run_ids, seconds
from rhesis_pipeline.runs.read import read_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.states import test_state
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q


@dataclass
class RunInspection:
    run: Run
    cancel_requested: bool
    last_progress_at: Any
    callback_enqueued_at: Any
    age_s: float
    idle_s: float
    options: dict[str, Any]
    executor: dict[str, Any]
    #: (queue, actor, state, messages) of the run's members and callback still in a queue.
    messages: list[dict[str, Any]]
    #: Every test (only when asked for: ``verbose``).
    tests: list[dict[str, Any]] | None = field(default=None)

    @property
    def duration_s(self) -> float | None:
        if self.run.finished_at is None:
            return None
        start = self.run.started_at or self.run.created_at
        return round((self.run.finished_at - start).total_seconds(), 3)

    def as_dict(self) -> dict[str, Any]:
        r = self.run
        data: dict[str, Any] = {
            "run_id": r.id,
            "name": r.name,
            "status": r.status.value,
            "organization_id": r.organization_id,
            "user_id": r.user_id,
            "total": r.total,
            "done": r.done,
            "passed": r.passed,
            "failed": r.failed,
            "errored": r.errored,
            "lost": r.lost,
            "cancelled": r.cancelled,
            "percent": round(100.0 * r.done / r.total, 1) if r.total else 100.0,
            "cancel_requested": self.cancel_requested,
            "created_at": iso(r.created_at),
            "started_at": iso(r.started_at),
            "last_progress_at": iso(self.last_progress_at),
            "callback_enqueued_at": iso(self.callback_enqueued_at),
            "finished_at": iso(r.finished_at),
            "age_s": self.age_s,
            "idle_s": self.idle_s,
            "duration_s": self.duration_s,
            "callbacks_run": r.collected_count,
            "rerun_of": r.rerun_of,
            "executor": self.executor,
            "options": self.options,
            "messages": self.messages,
        }
        if self.tests is not None:
            data["tests"] = self.tests
        return data


def inspect_run(
    run_id: str, *, verbose: bool = False, organization_id: str | None = None
) -> RunInspection:
    """Everything an operator needs about one run; raises RunNotFound or InvalidRunId.

    organization_id: read as that organization's tenant (row-level security): another
    organization's run is not found. (A tenant sees no claims: ``claimed_by`` is None.)
    """
    (run_id,) = parse_run_ids([run_id])
    with tenancy.connect(organization_id) as conn:
        record = read_run(conn, run_id)
        timing = conn.execute(Q["get_run_timing"], {"run_id": run_id}).one()
        messages = [
            {
                "queue": m.queue_name,
                "actor": m.actor_name,
                "state": m.state,
                "messages": int(m.messages),
            }
            for m in conn.execute(Q["run_messages"], {"run_id": run_id})
        ]
        tests = None
        if verbose:
            tests = [
                {
                    "test_id": t.test_id,
                    "status": test_state(t.status, t.message_state).value,
                    "attempts": t.attempts,
                    "error": t.error,
                    "worker": t.worker,
                    "duration_ms": None if t.duration_ms is None else round(t.duration_ms, 1),
                    "started_at": iso(t.started_at),
                    "finished_at": iso(t.finished_at),
                    "queue": t.queue_name,
                    "message_state": t.message_state,
                    "claimed_by": None if t.claimed_by is None else str(t.claimed_by),
                    "claimed_at": iso(t.claimed_at),
                }
                for t in conn.execute(Q["run_tests"], {"run_id": run_id})
            ]
    return RunInspection(
        run=record,
        cancel_requested=timing.cancel_requested,
        last_progress_at=timing.last_progress_at,
        callback_enqueued_at=timing.callback_enqueued_at,
        age_s=seconds(timing.age_s) or 0.0,
        idle_s=seconds(timing.idle_s) or 0.0,
        options=timing.options or {},
        executor=timing.executor or {},
        messages=messages,
        tests=tests,
    )
