"""One consistent view of a run for an export: its row, its metric names and its results.

A JUnit file states its counts (tests, failures, errors, skipped) in the ``<testsuite>``
element, before the first ``<testcase>``; a CSV file names its metric columns in its
header, before the first row. So an export reads the run's counters and metric names
first and then streams the results — and while it streams, workers may go on recording
outcomes of an unfinished run. :func:`run_snapshot` reads all three in one read-only
REPEATABLE READ transaction (query ``snapshot_transaction``): a member's outcome and the
run's counters are committed together, so the counts agree with the rows streamed, and a
metric name in a row is always in the header.

The results come through a server-side cursor, *batch_size* rows per round trip: the
memory of an export is one batch, whatever the run's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.runs.read import RESULTS_BATCH, read_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.scores import MetricSummary, read_metric_summary
from rhesis_pipeline.storage import db, tenancy
from rhesis_pipeline.storage.queries import Q


@dataclass
class RunSnapshot:
    """A run as one transaction sees it. ``metrics``: one summary per metric name, in name
    order; ``results``: the run's results in suite order (the dicts of
    :func:`~rhesis_pipeline.runs.read.iter_results`), to be iterated once, inside the
    ``with`` block of :func:`run_snapshot`."""

    run: Run
    metrics: list[MetricSummary]
    results: Iterator[dict[str, Any]]

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]


@contextmanager
def run_snapshot(
    run_id: str, *, organization_id: str | None = None, batch_size: int = RESULTS_BATCH
) -> Iterator[RunSnapshot]:
    """Run *run_id* read in one snapshot; the transaction is held until the block ends.
    Raises RunNotFound, also for another organization's run when *organization_id* is
    given (the reader then acts as that tenant: row-level security)."""
    with db.connect() as conn:
        conn.execute(Q["snapshot_transaction"])
        if organization_id is not None:
            tenancy.act_as_tenant(conn, organization_id)
        run = read_run(conn, run_id)
        metrics = read_metric_summary(conn, run.id)
        rows = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
            Q["get_results"], {"run_id": run.id}
        )
        yield RunSnapshot(run, metrics, (dict(r._mapping) for r in rows))
