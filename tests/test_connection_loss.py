"""A lost database connection is an event, not a state (issue: survive the database going
away). Each scenario cuts the connections of a real worker and checks what happens next.

The chaos scenarios (cuts at random moments under load, a server restart) are in
tests/test_database_chaos.py.
"""

from __future__ import annotations

import logging
import time

from rhesis_pipeline import db, runs
from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.monitor import list_workers
from rhesis_pipeline.registry import Registration
from rhesis_pipeline.runs import launch_test_run
from rhesis_pipeline.settings import Settings

from .support import actors
from .support.faults import cut_connections
from .support.runs import fake_claim, fake_worker, results_by_id, scalar, wait_finished
from .support.waiting import wait_until

FAST_HEARTBEAT = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "5"}


def _use_fast_heartbeat(database_url: str) -> None:
    db.configure(
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
    caplog.set_level(logging.WARNING, logger="rhesis_pipeline.outage")
    registration = Registration(["rhesis-tests"])
    registration.start()
    try:
        assert _state(registration.worker_id) == (True, True)

        # When: every connection of the database is ended (its lock goes with its session).
        assert cut_connections(database_url) >= 1
        cut_at = time.monotonic()

        # Then: it reconnects and holds its lock again within two heartbeat intervals ...
        wait_until(
            lambda: registration.lock_held and _state(registration.worker_id) == (True, True),
            timeout=10,
            what="the worker live with its lock again",
        )
        assert time.monotonic() - cut_at < 2 * 0.5 + 0.5  # two intervals (+ query time)
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


def test_a_delayed_message_dropped_with_a_lost_connection_still_runs_once(database_url, workers):
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
    # When: every connection is ended: dramatiq drops its delay queue on the consumer error.
    assert cut_connections(database_url) >= 1
    db.dispose()  # this test's own pooled connections were cut too
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
    assert "returned 1 messages this worker had claimed" in worker.log()
    assert worker.proc.poll() is None


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
    assert runs.get_progress(run_id).errored == 1
