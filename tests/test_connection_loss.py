"""A lost database connection is an event, not a state (issue: survive the database going
away). Each scenario cuts the connections of a real worker and checks what happens next.

The chaos scenarios (cuts at random moments under load, a server restart) are in
tests/test_database_chaos.py.
"""

from __future__ import annotations

import logging
import threading

import pytest

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.monitor import list_workers
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.settings import Settings
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.worker.registry import Registration

from .support import actors
from .support.faults import cut_connections
from .support.runs import (
    fake_claim,
    fake_worker,
    results_by_id,
    scalar,
    survive_cuts,
    wait_finished,
)
from .support.waiting import wait_until

FAST_HEARTBEAT = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "5"}


def _use_fast_heartbeat(database_url: str) -> None:
    engine.configure(
        settings_=Settings.from_env({"DATABASE_URL": database_url, **FAST_HEARTBEAT}),
        url=database_url,
    )


def _state(worker_id: str) -> tuple[bool, bool] | None:
    """(alive, lock held) of the worker, as the monitor sees it; None if this test's own
    pooled connection was just cut (the pool then connects anew on the next call)."""
    try:
        workers = list_workers().workers
    except DatabaseUnavailable:
        return None
    (info,) = [w for w in workers if w.worker_id == worker_id]
    return info.alive, info.lock_held


def test_a_worker_takes_its_liveness_lock_again_within_two_heartbeats(database_url, caplog):
    # Given: a registered worker (heartbeat every 0.5 s) holding its liveness lock.
    _use_fast_heartbeat(database_url)
    caplog.set_level(logging.WARNING, logger="rhesis_pipeline.storage.outage")
    registration = Registration(["rhesis-tests"])
    registration.start()
    try:
        assert _state(registration.worker_id) == (True, True)

        # When: every connection of the database is ended (its lock goes with its session).
        assert cut_connections(database_url) >= 1

        # Then: it reconnects and holds its lock again (at its next heartbeats) ...
        wait_until(
            lambda: registration.lock_held and _state(registration.worker_id) == (True, True),
            timeout=10,
            what="the worker live with its lock again",
        )
        # ... and said so in exactly two lines: lost, and back.
        lines = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
        assert len(lines) == 2, lines
        assert "lost the database" in lines[0] and "has the database again" in lines[1]
    finally:
        registration.stop()
    assert _state(registration.worker_id) == (False, False)  # stopped: dead, lock released


def test_a_worker_that_lost_its_lock_is_reconnecting_not_dead_during_its_grace(database_url):
    from datetime import datetime, timedelta, timezone

    from rhesis_pipeline.maintenance.rescue import RescueConfig, Rescuer

    # Given: a message claimed by a registered worker whose session (and lock) is gone but
    # whose heartbeat is 2 s old: it may be reconnecting.
    run_id = launch_test_run([{"id": "t"}], executor="tests.support.targets:noop")
    message_id = scalar("SELECT message_id FROM rhesis.test_results WHERE run_id = :r", r=run_id)
    now = datetime.now(timezone.utc)
    worker = "00000000-0000-0000-0000-0000000000bb"
    with db.begin() as conn:
        fake_worker(conn, worker, now - timedelta(seconds=2))
        fake_claim(conn, message_id, worker, now)
    config = RescueConfig(lock_grace_s=15, heartbeat_timeout_s=30, settle_s=0)
    # When/then: within its lock grace, its message is not rescued ...
    assert Rescuer(config, clock=lambda: now).run_once().requeued == 0
    # ... past it, it is dead and its message goes back.
    later = Rescuer(config, clock=lambda: now + timedelta(seconds=14))
    assert later.run_once().requeued == 1
    # And a rescuer whose own session is younger than settle_s judges nobody by heartbeat.
    with db.begin() as conn:
        fake_claim(conn, message_id, worker, now)
    unsettled = RescueConfig(lock_grace_s=15, heartbeat_timeout_s=30, settle_s=3600)
    assert Rescuer(unsettled, clock=lambda: now + timedelta(hours=1)).run_once().requeued == 0


@pytest.mark.slow
def test_a_delayed_message_held_through_a_lost_connection_runs_once(database_url, workers):
    # Given: a live worker holding a delayed message in dramatiq's in-memory delay queue.
    worker = workers.start(processes=1, threads=2, env=FAST_HEARTBEAT)
    message = actors.record.send_with_options(args=("delayed",), delay=4_000)
    wait_until(
        lambda: (
            scalar(
                "SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=message.message_id
            )
            == "consumed"
        ),
        timeout=15,
        what="the delayed message claimed by the worker",
    )
    # When: every connection is ended.
    assert cut_connections(database_url) >= 1
    engine.dispose()  # this test's own pooled connections were cut too
    # Then: the message is not stuck as 'consumed' by a live worker: it runs, once.
    wait_until(
        lambda: scalar("SELECT count(*) FROM public.test_records WHERE key = 'delayed'") == 1,
        timeout=30,
        what="the delayed message executed",
    )
    wait_until(
        lambda: (
            scalar(
                "SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=message.message_id
            )
            == "done"
        ),
        timeout=15,
        what="the delayed message acked",
    )
    assert worker.proc.poll() is None
    # The consumers handled the loss themselves: one line each, no dramatiq restarts.
    log = worker.log()
    assert "Consumer encountered a connection error" not in log
    assert log.count("consumer of rhesis-test-smoke.DQ lost the database") == 1
    assert log.count("consumer of rhesis-test-smoke.DQ has the database again") == 1


def test_claims_a_live_worker_no_longer_holds_go_back_to_their_queue(database_url, caplog):
    """dramatiq drops its in-memory delay queue when an error reaches its consumer thread
    (e.g. moving a due message to its queue while the database is away) and replaces the
    consumer. The next consumer of that queue returns what this worker claimed there but
    no longer holds, in its place."""
    caplog.set_level(logging.WARNING, logger="rhesis_pipeline.worker.acks")
    registration = Registration([actors.SMOKE_QUEUE])
    registration.start()
    queue = f"{actors.SMOKE_QUEUE}.DQ"
    broker = actors.record.broker
    try:
        # Given: a delayed message claimed and handed to dramatiq's delay queue ...
        message = actors.record.send_with_options(args=("held",), delay=3_000)
        first = broker.consume(queue, prefetch=2, timeout=200)
        handed = wait_until(lambda: next(first), timeout=10, what="the message handed out")
        assert handed.message_id == message.message_id
        token = scalar(
            "SELECT token::text FROM rhesis.claims WHERE message_id = :m", m=handed.message_id
        )
        # ... which dramatiq then drops, closing the consumer (as after an error).
        first.close()
        assert (
            scalar(
                "SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=handed.message_id
            )
            == "consumed"
        )

        # When: the next consumer of the queue connects.
        second = broker.consume(queue, prefetch=2, timeout=200)
        again = wait_until(lambda: next(second), timeout=10, what="the message handed out again")

        # Then: it went back to its queue and was claimed again, under a new token.
        assert again.message_id == message.message_id
        assert (
            scalar(
                "SELECT token::text FROM rhesis.claims WHERE message_id = :m", m=again.message_id
            )
            != token
        )
        assert any("returned 1 messages" in r.getMessage() for r in caplog.records)
        second.requeue([again])
        second.close()
    finally:
        registration.stop()


@pytest.mark.slow
def test_outcomes_stored_while_the_database_is_cut_are_kept_and_stored(
    database_url, workers, tmp_path
):
    # Given: a run whose two tests each end every connection of the database while they
    # execute — one then passes, one then fails for good (max_retries 0) — and 20 others.
    log = tmp_path / "executions.log"
    workers.start(processes=1, threads=4, env={**FAST_HEARTBEAT, "RHESIS_TEST_EXEC_LOG": str(log)})
    tests = [
        {"id": "cut-and-pass", "cut": True},
        {"id": "cut-and-fail", "cut": True, "fail": True},
        *({"id": f"t{i}", "sleep_s": 0.05} for i in range(20)),
    ]
    run_id = launch_test_run(
        tests, executor="tests.support.targets:logged", options={"max_retries": 0}
    )

    # Then: the run ends with every outcome stored once: the outcome of the test that
    # passed (stored by the actor) and the error of the one that failed (stored by the
    # after-process hook) were kept while the database was cut, not dropped.
    run = wait_finished(run_id, timeout=60)
    results = results_by_id(run_id)
    assert results["cut-and-pass"]["status"] == "passed"
    assert results["cut-and-fail"]["status"] == "error"
    assert "failed on purpose after cutting" in results["cut-and-fail"]["error"]
    assert all(results[f"t{i}"]["status"] == "passed" for i in range(20))
    assert (run.status, run.done, run.collected_count) == ("PARTIAL", 22, 1)
    executions = log.read_text().split()
    assert executions.count("cut-and-pass") == 1 and executions.count("cut-and-fail") == 1
    assert get_run(run_id).errored == 1


def _listening_sessions() -> int:
    return survive_cuts(
        lambda: scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
        )
    )


def test_a_rate_limit_waiter_whose_connection_is_cut_still_wakes(database_url):
    from rhesis_pipeline.worker.rate_limits import PostgresRateLimiterBackend

    # Given: a waiter blocked on an event (a Barrier's wait), listening on its connection.
    backend = PostgresRateLimiterBackend()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(backend.wait("barrier-k", 30_000)))
    waiter.start()
    wait_until(lambda: _listening_sessions() == 1, timeout=10, what="the waiter listening")

    # When: its connection is ended; it listens again on a new one.
    assert cut_connections(database_url) >= 1
    engine.dispose()
    wait_until(lambda: _listening_sessions() == 1, timeout=10, what="the waiter listening again")

    # Then: the event published afterwards wakes it (no error, well before its timeout).
    backend.wait_notify("barrier-k", 10_000)
    waiter.join(10)
    assert woke == [True]
