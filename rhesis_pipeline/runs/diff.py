"""Comparing two runs: which tests' verdicts changed, which tests only one run has, and how
each metric's mean score and pass rate moved (``rhesis-pipeline diff``, the dashboard's
"compare with…").

Run A is the baseline, run B the run judged against it. Tests are matched by ``test_id``;
a test's verdict is its stored status:

* **regression**: passed in A, failed or error in B (``diff`` exits 1 when there is one);
* **fix**: failed or error in A, passed in B;
* **changed**: any other difference (passed → cancelled or lost, failed ↔ error, …);
* **only_in_a** / **only_in_b**: the other run has no test of that id.

**Streamed.** The comparison runs in Postgres (query ``diff_runs``: a FULL JOIN of the two
runs' primary-key ranges that keeps only the tests that differ) and its rows are read
through a server-side cursor :data:`~rhesis_pipeline.runs.read.RESULTS_BATCH` at a time, so
diffing two 100,000-test runs holds one batch in Python, not a run
(``benchmarks/diff.py`` measures it). :func:`summarize` keeps the first
:data:`SHOWN` tests of each kind and counts the rest: what the text output and the
dashboard show. The per-metric figures come from
:func:`~rhesis_pipeline.runs.scores.metric_summary` of each run (aggregated in SQL).

Read as *organization_id*'s tenant when given (row-level security): another organization's
run is not found (:class:`~rhesis_pipeline.errors.RunNotFound`), so runs of two tenants
cannot be compared under a tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rhesis_pipeline.runs.read import RESULTS_BATCH, read_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.report import reason
from rhesis_pipeline.runs.scores import MetricSummary, metric_summary
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

#: Tests of each kind that :func:`summarize` keeps (the text output and the dashboard show
#: them; the rest are counted, and ``diff --json`` lists them all).
SHOWN = 20


class Change(str, Enum):
    """How a test differs between run A and run B (the ``change`` of ``diff --json``)."""

    REGRESSION = "regression"
    FIX = "fix"
    CHANGED = "changed"
    ONLY_IN_A = "only_in_a"
    ONLY_IN_B = "only_in_b"


#: Each kind's heading, in the order the text output and the dashboard show them.
HEADINGS = {
    Change.REGRESSION: "Regressions (passed in A, failed or error in B)",
    Change.FIX: "Fixes (failed or error in A, passed in B)",
    Change.CHANGED: "Other changes of status",
    Change.ONLY_IN_A: "Only in A",
    Change.ONLY_IN_B: "Only in B",
}


@dataclass(frozen=True)
class Side:
    """A test as one run has it: status, suite position, error and stored verdicts."""

    status: str
    position: int
    error: str | None
    metrics: Any

    @property
    def reason(self) -> str:
        """Why it did not pass, in one line ("-" if it passed; see runs.report.reason)."""
        return reason({"status": self.status, "error": self.error, "metrics": self.metrics})

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "position": self.position,
            "error": self.error,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class ChangedTest:
    """One test that differs: *a* and *b* are the test in each run (None: not in it)."""

    test_id: str
    change: Change
    a: Side | None
    b: Side | None

    def as_dict(self) -> dict[str, Any]:
        """One element of ``diff --json``'s ``tests``."""
        return {
            "test_id": self.test_id,
            "change": self.change.value,
            "a": None if self.a is None else self.a.as_dict(),
            "b": None if self.b is None else self.b.as_dict(),
        }


@dataclass(frozen=True)
class MetricChange:
    """One metric name across the two runs; a side without the metric is None. Scores and
    pass rates are in [0, 1]; a change is B's value minus A's (None if either is None)."""

    name: str
    type: str
    a: MetricSummary | None
    b: MetricSummary | None

    @property
    def mean_score_a(self) -> float | None:
        return None if self.a is None else self.a.mean_score

    @property
    def mean_score_b(self) -> float | None:
        return None if self.b is None else self.b.mean_score

    @property
    def pass_rate_a(self) -> float | None:
        return None if self.a is None else self.a.pass_rate

    @property
    def pass_rate_b(self) -> float | None:
        return None if self.b is None else self.b.pass_rate

    @property
    def mean_score_change(self) -> float | None:
        return _minus(self.mean_score_b, self.mean_score_a)

    @property
    def pass_rate_change(self) -> float | None:
        return _minus(self.pass_rate_b, self.pass_rate_a)

    def as_dict(self) -> dict[str, Any]:
        """One element of ``diff --json``'s ``metrics``."""
        return {
            "name": self.name,
            "type": self.type,
            "judged_a": None if self.a is None else self.a.judged,
            "judged_b": None if self.b is None else self.b.judged,
            "mean_score_a": self.mean_score_a,
            "mean_score_b": self.mean_score_b,
            "mean_score_change": self.mean_score_change,
            "pass_rate_a": self.pass_rate_a,
            "pass_rate_b": self.pass_rate_b,
            "pass_rate_change": self.pass_rate_change,
        }


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


@dataclass(frozen=True)
class Comparison:
    """What a diff says about the runs as a whole: both runs and the per-metric changes
    (the tests come from :func:`iter_changes`)."""

    run_a: Run
    run_b: Run
    metrics: list[MetricChange]


def compare(run_a: str, run_b: str, *, organization_id: str | None = None) -> Comparison:
    """Both runs' records and per-metric changes (in metric name order). Raises
    RunNotFound for a run that does not exist, or that another organization than
    *organization_id* owns."""
    with tenancy.connect(organization_id) as conn:
        a, b = read_run(conn, run_a), read_run(conn, run_b)
    by_name_a = {m.name: m for m in metric_summary(run_a, organization_id=organization_id)}
    by_name_b = {m.name: m for m in metric_summary(run_b, organization_id=organization_id)}
    metrics = []
    for name in sorted(by_name_a.keys() | by_name_b.keys()):
        ma, mb = by_name_a.get(name), by_name_b.get(name)
        either = mb if mb is not None else ma
        assert either is not None  # the name came from one of the two
        metrics.append(MetricChange(name=name, type=either.type, a=ma, b=mb))
    return Comparison(run_a=a, run_b=b, metrics=metrics)


def iter_changes(
    run_a: str,
    run_b: str,
    *,
    organization_id: str | None = None,
    batch_size: int = RESULTS_BATCH,
) -> Iterator[ChangedTest]:
    """The tests that differ between run A and run B: regressions, then fixes, other
    changes, tests only in A, only in B, each in suite order. Streamed through a
    server-side cursor *batch_size* rows at a time, in one transaction (a consistent
    snapshot, held until the iterator is exhausted or closed). Raises RunNotFound first
    for a run this reader cannot see."""
    with tenancy.connect(organization_id) as conn:
        read_run(conn, run_a)
        read_run(conn, run_b)
        rows = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
            Q["diff_runs"], {"run_a": str(run_a), "run_b": str(run_b)}
        )
        for r in rows:
            yield ChangedTest(
                test_id=r.test_id,
                change=Change(r.change),
                a=None
                if r.status_a is None
                else Side(r.status_a, r.position_a, r.error_a, r.metrics_a),
                b=None
                if r.status_b is None
                else Side(r.status_b, r.position_b, r.error_b, r.metrics_b),
            )


@dataclass
class Digest:
    """How many tests of each kind differ, and the first *shown* of each (in the order of
    :func:`iter_changes`): what fits on a screen, whatever the runs' size."""

    shown: int = SHOWN
    counts: dict[Change, int] = field(default_factory=lambda: dict.fromkeys(Change, 0))
    tests: dict[Change, list[ChangedTest]] = field(default_factory=lambda: {c: [] for c in Change})

    def add(self, test: ChangedTest) -> None:
        self.counts[test.change] += 1
        if len(self.tests[test.change]) < self.shown:
            self.tests[test.change].append(test)

    def more(self, change: Change) -> int:
        """Tests of kind *change* counted but not kept."""
        return self.counts[change] - len(self.tests[change])

    @property
    def regressions(self) -> int:
        return self.counts[Change.REGRESSION]

    def describe(self) -> str:
        """``10 regressions, 5 fixes, 0 other changes, 3 only in A, 2 only in B``."""
        c = self.counts
        return (
            f"{_plural(c[Change.REGRESSION], 'regression')}, "
            f"{_plural(c[Change.FIX], 'fix', 'fixes')}, "
            f"{_plural(c[Change.CHANGED], 'other change')}, "
            f"{c[Change.ONLY_IN_A]} only in A, {c[Change.ONLY_IN_B]} only in B"
        )


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def summarize(
    run_a: str, run_b: str, *, organization_id: str | None = None, shown: int = SHOWN
) -> Digest:
    """Count the tests that differ and keep the first *shown* of each kind (see
    :func:`iter_changes`; memory: *shown* tests per kind and one cursor batch)."""
    digest = Digest(shown=shown)
    for test in iter_changes(run_a, run_b, organization_id=organization_id):
        digest.add(test)
    return digest
