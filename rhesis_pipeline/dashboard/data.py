"""What the dashboard's pages read: named queries and the monitor's own functions, as
the organization of the request (row-level security) or as the system role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.monitor import inspect_run, status
from rhesis_pipeline.monitor.status import RUN_STATUSES
from rhesis_pipeline.runs import ids as run_ids
from rhesis_pipeline.runs import states
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

#: Runs per page of the runs list; tests per page of a run.
RUNS_PAGE = 50
TESTS_PAGE = 200
#: Bars of a run's duration histogram.
HISTOGRAM_BUCKETS = 20


class BadRequest(ValueError):
    """A request parameter that is not valid; its text says which and why."""


def parse_run_id(value: str) -> str:
    """A whole run id (a page cursor's)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise BadRequest(f"{value!r} is not a run id (a UUID)") from None


def resolve_run_id(value: str, organization_id: str | None) -> str:
    """The run a URL names by its UUID or a unique prefix of at least 8 hex digits, seen
    as *organization_id*; raises InvalidRunId, AmbiguousRunId (400) or RunNotFound (404)."""
    return run_ids.resolve(value, organization_id=organization_id)


@dataclass
class RunFilters:
    status: str | None = None
    organization: str | None = None
    name: str | None = None
    before_at: datetime | None = None
    before_id: str | None = None

    @classmethod
    def parse(cls, params: Any) -> RunFilters:
        status = (params.get("status") or "").strip().upper() or None
        if status is not None and status not in RUN_STATUSES:
            raise BadRequest(f"status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        before = (params.get("before") or "").strip()
        before_at = before_id = None
        if before:
            at, _, run_id = before.rpartition("_")
            try:
                before_at = datetime.fromisoformat(at)
            except ValueError:
                raise BadRequest(f"before {before!r} is not a page cursor") from None
            before_id = parse_run_id(run_id)
        return cls(
            status=status,
            organization=(params.get("org") or "").strip() or None,
            name=(params.get("name") or "").strip()[:200] or None,
            before_at=before_at,
            before_id=before_id,
        )


def _prefix_pattern(text: str) -> str:
    """A LIKE pattern matching names that start with *text*, any case."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def runs_page(filters: RunFilters, organization_id: str | None) -> tuple[list[Any], str | None]:
    """A page of runs and the cursor of the next page (None: the last page)."""
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(
            Q["dashboard_runs"],
            {
                "status": filters.status,
                "organization": filters.organization,
                "name_prefix": None if filters.name is None else _prefix_pattern(filters.name),
                "before_at": filters.before_at,
                "before_id": filters.before_id,
                "limit": RUNS_PAGE + 1,
            },
        ).all()
    more = len(rows) > RUNS_PAGE
    rows = list(rows[:RUNS_PAGE])
    cursor = f"{rows[-1].created_at.isoformat()}_{rows[-1].id}" if more and rows else None
    return rows, cursor


def active_runs(organization_id: str | None, limit: int = 20) -> list[dict[str, Any]]:
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["dashboard_active_runs"], {"limit": limit}).all()
    return [
        {
            "id": str(r.id),
            "name": r.name,
            "status": r.status,
            "done": r.done,
            "total": r.total,
            "passed": r.passed,
            "failed": r.failed,
            "errored": r.errored + r.lost,
            "percent": round(100.0 * r.done / r.total, 1) if r.total else 100.0,
        }
        for r in rows
    ]


def overview(organization_id: str | None):
    """The system's status (findings, queues, workers, runs by status)."""
    return status(active_limit=1, organization_id=organization_id)


@dataclass
class TestRow:
    """A test on the run page; ``state`` is its word (:mod:`rhesis_pipeline.runs.states`)."""

    test_id: str
    position: int
    status: str
    attempts: int
    duration_ms: float | None
    error: str | None
    metrics: Any
    worker: str | None
    finished_at: datetime | None
    message_state: str | None
    state: str


@dataclass
class RunPage:
    inspection: Any
    callback_state: str | None
    histogram: list[dict[str, Any]]
    tests: list[TestRow]
    next_after: int | None


def run_page(run_id: str, organization_id: str | None, *, only_failed: bool, after: int) -> RunPage:
    """Everything the run page shows; raises RunNotFound (also for another
    organization's run)."""
    inspection = inspect_run(run_id, organization_id=organization_id)
    with tenancy.connect(organization_id) as conn:
        callback_state = conn.execute(Q["run_callback_state"], {"run_id": run_id}).scalar()
        buckets = conn.execute(
            Q["dashboard_duration_histogram"], {"run_id": run_id, "buckets": HISTOGRAM_BUCKETS}
        ).all()
        rows = conn.execute(
            Q["dashboard_run_tests"],
            {"run_id": run_id, "after": after, "only_failed": only_failed, "limit": TESTS_PAGE + 1},
        ).all()
    histogram = []
    if buckets:
        lo, hi = buckets[0].lo, buckets[0].hi
        width = (hi - lo) / HISTOGRAM_BUCKETS if hi > lo else 0.0
        counts = {b.bucket: b.tests for b in buckets}
        peak = max(counts.values())
        for i in range(1, HISTOGRAM_BUCKETS + 1):
            n = counts.get(i, 0)
            histogram.append(
                {
                    "from_ms": lo + (i - 1) * width,
                    "to_ms": lo + i * width,
                    "tests": n,
                    "height": 100.0 * n / peak if peak else 0.0,
                }
            )
    more = len(rows) > TESTS_PAGE
    tests = [
        TestRow(**t._mapping, state=states.test_state(t.status, t.message_state))
        for t in rows[:TESTS_PAGE]
    ]
    return RunPage(
        inspection=inspection,
        callback_state=callback_state,
        histogram=histogram,
        tests=tests,
        next_after=tests[-1].position if more else None,
    )


__all__ = [
    "BadRequest",
    "RunFilters",
    "RunNotFound",
    "RunPage",
    "active_runs",
    "overview",
    "parse_run_id",
    "resolve_run_id",
    "run_page",
    "runs_page",
]
