"""What the dashboard's pages read: named queries and the monitor's own functions, as
the organization of the request (row-level security) or as the system role.

Every function here blocks on the database: the routes call them from a worker thread
(:mod:`.state`). Rows are read by column name into the dataclasses below, which say what
a template may use.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.monitor import RunInspection, Status, inspect_run, status
from rhesis_pipeline.monitor.status import RUN_STATUSES
from rhesis_pipeline.runs import diff, states
from rhesis_pipeline.runs import ids as run_ids
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.scores import MetricSummary, metric_summary
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
    """The runs list's filters (None: any) and where its page starts: before the run
    created at *before_at* with id *before_id* (None: the newest)."""

    status: str | None = None
    organization: str | None = None
    name: str | None = None
    before_at: datetime | None = None
    before_id: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RunFilters:
        """The filters of a query string: ``status`` (a run status, any case), ``org``,
        ``name`` (the start of the name, any case; 200 characters at most) and
        ``before`` (a page cursor, ``<created_at>_<run id>``); raises BadRequest."""
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


@dataclass
class RunRow:
    """A run in the runs list (``dashboard_runs``); durations and ages in seconds."""

    id: str
    name: str
    status: str
    organization_id: str | None
    total: int
    done: int
    passed: int
    failed: int
    errored: int
    lost: int
    cancelled: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rerun_of: str | None
    duration_s: Decimal
    age_s: Decimal


def runs_page(filters: RunFilters, organization_id: str | None) -> tuple[list[RunRow], str | None]:
    """A page of runs (:data:`RUNS_PAGE` at most) and the cursor of the next page (None:
    the last page)."""
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
    page = [RunRow(**row._mapping) for row in rows[:RUNS_PAGE]]
    more = len(rows) > RUNS_PAGE
    cursor = f"{page[-1].created_at.isoformat()}_{page[-1].id}" if more and page else None
    return page, cursor


class ActiveRunJson(TypedDict):
    """A queued or running run as ``/api/active-runs`` sends it (JSON) and the overview
    shows it: counts of tests; ``errored`` includes the lost ones; ``percent`` done."""

    id: str
    name: str
    status: str
    done: int
    total: int
    passed: int
    failed: int
    errored: int
    percent: float


def active_runs(organization_id: str | None, limit: int = 20) -> list[ActiveRunJson]:
    """The *limit* newest queued or running runs."""
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


def overview(organization_id: str | None) -> Status:
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
    #: What the target returned about the test's metrics (verdicts and reasons): JSON.
    metrics: Any
    worker: str | None
    finished_at: datetime | None
    message_state: str | None
    state: str


@dataclass
class HistogramBar:
    """One bar of a run's duration histogram: *tests* took *from_ms* to *to_ms*;
    *height* in percent of the tallest bar."""

    from_ms: float
    to_ms: float
    tests: int
    height: float


@dataclass
class RunPage:
    """The run page: the run (``inspection.run``), its callback message's state, its
    duration histogram, a page of its tests and where the next page starts (None: the
    last page)."""

    inspection: RunInspection
    callback_state: str | None
    histogram: list[HistogramBar]
    tests: list[TestRow]
    next_after: int | None
    #: Per metric name: pass rate and mean score (runs.scores.metric_summary).
    metrics: list[MetricSummary] = field(default_factory=list)


def run_page(run_id: str, organization_id: str | None, *, only_failed: bool, after: int) -> RunPage:
    """Everything the run page shows; raises RunNotFound (also for another
    organization's run)."""
    inspection = inspect_run(run_id, organization_id=organization_id)
    with tenancy.connect(organization_id) as conn:
        callback = conn.execute(Q["run_callback_state"], {"run_id": run_id}).one_or_none()
        buckets = conn.execute(
            Q["dashboard_duration_histogram"], {"run_id": run_id, "buckets": HISTOGRAM_BUCKETS}
        ).all()
        rows = conn.execute(
            Q["dashboard_run_tests"],
            {"run_id": run_id, "after": after, "only_failed": only_failed, "limit": TESTS_PAGE + 1},
        ).all()
    histogram: list[HistogramBar] = []
    if buckets:
        # Every row carries the run's shortest and longest duration.
        lo, hi = float(buckets[0].lo), float(buckets[0].hi)
        width = (hi - lo) / HISTOGRAM_BUCKETS if hi > lo else 0.0
        counts: dict[int, int] = {b.bucket: b.tests for b in buckets}
        peak = max(counts.values())
        for i in range(1, HISTOGRAM_BUCKETS + 1):
            n = counts.get(i, 0)
            histogram.append(
                HistogramBar(
                    from_ms=lo + (i - 1) * width,
                    to_ms=lo + i * width,
                    tests=n,
                    height=100.0 * n / peak if peak else 0.0,
                )
            )
    more = len(rows) > TESTS_PAGE
    tests = [
        TestRow(**t._mapping, state=states.test_state(t.status, t.message_state))
        for t in rows[:TESTS_PAGE]
    ]
    return RunPage(
        inspection=inspection,
        # The run's callback message's state, cast to text (its column keeps the name).
        callback_state=None if callback is None else callback.state,
        histogram=histogram,
        tests=tests,
        next_after=tests[-1].position if more else None,
        metrics=metric_summary(run_id, organization_id=organization_id),
    )


#: Tests of each kind of change the compare page lists (``rhesis-pipeline diff --json`` has all).
COMPARE_SHOWN = 200


@dataclass
class ComparePage:
    """The compare page of run B (``run``): against ``baseline`` (run A: the run asked
    for, else the previous run of the same name; None when there is none), the comparison
    and the tests that differ (the first :data:`COMPARE_SHOWN` of each kind); both None
    without a baseline."""

    run: Run
    baseline: str | None
    comparison: diff.Comparison | None
    digest: diff.Digest | None


def previous_run(run_id: str, organization_id: str | None) -> str | None:
    """The run of the same name created last before *run_id*, as *organization_id* sees
    runs (None: there is none)."""
    with tenancy.connect(organization_id) as conn:
        found = conn.execute(Q["previous_run_of_name"], {"run_id": run_id}).scalar()
    return None if found is None else str(found)


def compare_page(run_b: str, baseline: str | None, organization_id: str | None) -> ComparePage:
    """Run *run_b* against *baseline* (a UUID or unique prefix; None or empty: the previous
    run of the same name); raises InvalidRunId, AmbiguousRunId (400) or RunNotFound (404)."""
    run = get_run(run_b, organization_id=organization_id)
    run_a = (
        resolve_run_id(baseline, organization_id)
        if baseline
        else previous_run(run_b, organization_id)
    )
    if run_a is None:
        return ComparePage(run=run, baseline=None, comparison=None, digest=None)
    comparison = diff.compare(run_a, run_b, organization_id=organization_id)
    digest = diff.summarize(run_a, run_b, organization_id=organization_id, shown=COMPARE_SHOWN)
    return ComparePage(run=run, baseline=run_a, comparison=comparison, digest=digest)


__all__ = [
    "ActiveRunJson",
    "BadRequest",
    "ComparePage",
    "HistogramBar",
    "RunFilters",
    "RunNotFound",
    "RunPage",
    "RunRow",
    "TestRow",
    "active_runs",
    "compare_page",
    "overview",
    "parse_run_id",
    "previous_run",
    "resolve_run_id",
    "run_page",
    "runs_page",
]
