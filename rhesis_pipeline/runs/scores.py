"""What a run's metrics said, per metric name: the pass rate and the mean score.

A test's metrics are stored with its result (``rhesis.test_results.metrics``: one verdict
per metric, ``{"type", "name", "passed", "reason", "score"}``, where ``score`` is a float
in [0, 1] or absent). :func:`metric_summary` aggregates them in Postgres in one pass over
the run's rows (query ``run_metric_summary``), so summarising a 100,000-test run holds
nothing in Python but one row per metric name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import Connection

from rhesis_pipeline.runs.read import read_run
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q


@dataclass(frozen=True)
class MetricSummary:
    """One metric name of a run. ``judged``: tests it gave a verdict on; ``passed``: of
    those, how many it passed; ``scored``: how many verdicts carried a numeric score;
    ``mean_score``: their mean (None when none did)."""

    name: str
    type: str
    judged: int
    passed: int
    scored: int
    mean_score: float | None

    @property
    def pass_rate(self) -> float:
        """Passed verdicts over all verdicts of this metric, in [0, 1]."""
        return self.passed / self.judged if self.judged else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pass_rate": self.pass_rate}


def metric_summary(run_id: str, *, organization_id: str | None = None) -> list[MetricSummary]:
    """Per metric name of run *run_id*, in name order. Raises RunNotFound like
    :func:`~rhesis_pipeline.runs.read.get_run`, also for another organization's run."""
    with tenancy.connect(organization_id) as conn:
        read_run(conn, run_id)
        return read_metric_summary(conn, run_id)


def read_metric_summary(conn: Connection, run_id: str) -> list[MetricSummary]:
    """:func:`metric_summary` read on *conn* (as whatever role it acts, in its transaction:
    an export reads it in the same snapshot as the results)."""
    rows = conn.execute(Q["run_metric_summary"], {"run_id": str(run_id)}).all()
    return [
        MetricSummary(
            name=r.name,
            type=r.type,
            judged=int(r.judged),
            passed=int(r.passed),
            scored=int(r.scored),
            mean_score=None if r.mean_score is None else float(r.mean_score),
        )
        for r in rows
    ]
