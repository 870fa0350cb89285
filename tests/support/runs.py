"""Helpers for tests about runs."""

from __future__ import annotations

from sqlalchemy import text

from rhesis_pipeline import db, runs
from rhesis_pipeline.errors import DatabaseUnavailable

from .waiting import wait_until


def wait_finished(run_id: str, timeout: float = 60.0) -> runs.RunRecord:
    wait_until(
        lambda: survive_cuts(lambda: runs.get_progress(run_id).finished),
        timeout=timeout,
        what=f"run {run_id} finished",
    )
    return runs.get_run(run_id)


def survive_cuts(check):
    """*check*(), or None if this test's own pooled connection was cut meanwhile (fault
    tests end every connection of the database; the pool connects anew next time)."""
    try:
        return check()
    except DatabaseUnavailable:
        db.dispose()
        return None


def hook_calls(run_id: str) -> list[dict]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text("SELECT payload FROM public.test_records WHERE key LIKE :p"),
                {"p": f"hook:{run_id}:%"},
            ).scalars()
        )


def results_by_id(run_id: str) -> dict[str, dict]:
    return {r["test_id"]: r for r in runs.get_results(run_id)}


def scalar(sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()
