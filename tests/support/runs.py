"""Helpers for tests about runs."""

from __future__ import annotations

from sqlalchemy import text

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.storage import db, engine

from .waiting import wait_until


def wait_finished(run_id: str, timeout: float = 60.0) -> Run:
    """Wait until the run is final and its callback message is acked: the callback stores
    the final status first and calls the run-finished hooks after, so a test that counts
    hook calls must not look at the status alone."""

    def finished_and_called_back() -> bool:
        return get_run(run_id).finished and _callback_state(run_id) == "done"

    wait_until(
        lambda: survive_cuts(finished_and_called_back),
        timeout=timeout,
        what=f"run {run_id} finished",
    )
    return get_run(run_id)


def _callback_state(run_id: str) -> str | None:
    return scalar(
        "SELECT q.state::text FROM rhesis.test_runs u "
        "JOIN dramatiq.queue q ON q.message_id = u.callback_message_id WHERE u.id = :r",
        r=run_id,
    )


def survive_cuts(check):
    """*check*(), or None if this test's own pooled connection was cut meanwhile (fault
    tests end every connection of the database; the pool connects anew next time)."""
    try:
        return check()
    except DatabaseUnavailable:
        engine.dispose()
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
    return {r["test_id"]: r for r in get_results(run_id)}


def scalar(sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def fake_worker(conn, worker_id: str, heartbeat_at) -> None:
    """Register a worker row that holds no liveness lock (a worker gone, or reconnecting)."""
    conn.execute(
        text(
            "INSERT INTO rhesis.workers (id, host, pid, queues, heartbeat_at) "
            "VALUES (:w, 'gone', 1, '{}', :beat)"
        ),
        {"w": worker_id, "beat": heartbeat_at},
    )


def fake_claim(conn, message_id: str, worker_id: str, at, *, started: bool = False) -> None:
    """Mark *message_id* consumed, claimed by *worker_id* at *at* (and started then)."""
    conn.execute(
        text("UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = :m"),
        {"m": message_id},
    )
    conn.execute(
        text(
            "INSERT INTO rhesis.claims (message_id, worker_id, token, queue_name, claimed_at, "
            "started_at) VALUES (:m, :w, gen_random_uuid(), 'rhesis-tests', :at, :started)"
        ),
        {"m": message_id, "w": worker_id, "at": at, "started": at if started else None},
    )
