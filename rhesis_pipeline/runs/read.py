"""Reading runs: one run, its results, the newest runs, and what the CLI polls.

The readers take ``organization_id``: given, they read as that organization's tenant
(role rhesis_tenant, row-level security; see :mod:`rhesis_pipeline.storage.tenancy`), so
another organization's run is not found — :class:`~rhesis_pipeline.errors.RunNotFound`,
as for a run that does not exist — and its rows are never read. None: the system role.
Progress is read from the run's counters (cheap enough to poll), never by counting
result rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Connection

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.storage import db, tenancy
from rhesis_pipeline.storage.queries import Q


def get_run(run_id: str, *, organization_id: str | None = None) -> Run:
    """One run: its row, done/total and counters (``.percent``, ``.finished``). Raises
    RunNotFound, also for another organization's run."""
    with tenancy.connect(organization_id) as conn:
        return read_run(conn, run_id)


def read_run(conn: Connection, run_id: str) -> Run:
    """Run *run_id*'s row, read on *conn* (as whatever role it acts); raises RunNotFound."""
    row = conn.execute(Q["get_run"], {"run_id": str(run_id)}).one_or_none()
    if row is None:
        raise RunNotFound(f"no test run with id {run_id}")
    return Run.from_row(row._mapping)


def get_results(run_id: str, *, organization_id: str | None = None) -> list[dict[str, Any]]:
    """A run's results in suite order, one dict per test (its ``rhesis.test_results``
    columns: test_id, status, output, metrics, error, duration_ms, attempts …). Raises
    RunNotFound like :func:`get_run`, also for another organization's run."""
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["get_results"], {"run_id": str(run_id)}).all()
        if not rows:
            # Every run has a test: none read means the run is not there for this reader.
            read_run(conn, run_id)
    return [dict(r._mapping) for r in rows]


#: Rows fetched per round trip by :func:`iter_results` (its memory is about this many rows).
RESULTS_BATCH = 1000


def iter_results(
    run_id: str, *, organization_id: str | None = None, batch_size: int = RESULTS_BATCH
) -> Iterator[dict[str, Any]]:
    """:func:`get_results`, streamed: a run's results in suite order, read through a
    server-side cursor *batch_size* rows at a time, so that writing a 100,000-test run
    to a file holds one batch in memory, not the run. The run is checked first (RunNotFound,
    also for another organization's run); the rows are one consistent snapshot (one
    transaction, held until the iterator is exhausted or closed)."""
    with tenancy.connect(organization_id) as conn:
        read_run(conn, run_id)
        rows = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
            Q["get_results"], {"run_id": str(run_id)}
        )
        for row in rows:
            yield dict(row._mapping)


def recent_runs(limit: int = 20, *, organization_id: str | None = None) -> list[Run]:
    """The newest *limit* runs, newest first (``rhesis-pipeline runs``)."""
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["recent_runs"], {"limit": limit}).all()
    return [Run.from_row(r._mapping) for r in rows]


def running_members(run_id: str) -> int:
    """How many of the run's tests a worker is executing now (claimed, not finished)."""
    with db.connect() as conn:
        return int(conn.execute(Q["running_members"], {"run_id": str(run_id)}).scalar() or 0)


def is_cancel_requested(run_id: str) -> bool:
    """The run was revoked (its members still queued or claimed are to be skipped)."""
    with db.connect() as conn:
        return bool(conn.execute(Q["run_cancel_requested"], {"run_id": str(run_id)}).scalar())
