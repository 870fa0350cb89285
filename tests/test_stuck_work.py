"""Stuck work: liveness-based rescue, fencing, overdue runs, the sweeper (real Postgres,
real worker subprocesses)."""

import os
import signal
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import monitor
from rhesis_pipeline.maintenance.sweeper import Sweeper
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.locks import SWEEP_LOCK_KEY

from .support import cli
from .support.runs import fake_claim, fake_worker, hook_calls, scalar, wait_finished
from .support.waiting import wait_until

#: Fast liveness for tests: heartbeat every 0.5 s, dead after 3 s of silence.
FAST = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "3"}


def executions(test_id: str | None = None) -> int:
    pattern = f"exec:{test_id}:%" if test_id else "exec:%"
    return scalar("SELECT count(*) FROM public.test_records WHERE key LIKE :p", p=pattern)


def make_tests(n, sleep_s):
    return [{"id": f"t{i:04d}", "sleep_s": sleep_s} for i in range(n)]


def assert_exact(run_id, n):
    run = get_run(run_id)
    assert run.status == "COMPLETED", run
    assert (run.total, run.done, run.passed) == (n, n, n)
    assert scalar("SELECT count(*) FROM rhesis.test_results WHERE run_id = :r", r=run_id) == n
    assert run.collected_count == 1 and len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_sigkilled_worker_during_a_300_test_run_the_other_finishes_it(workers):
    # Given: two separate worker instances sharing a 300-test run.
    victim = workers.start(processes=1, threads=8, env=FAST)
    survivor = workers.start(processes=1, threads=8, env=FAST)
    run_id = launch_test_run(make_tests(300, 0.05), executor="tests.support.targets:counted_sleep")
    wait_until(lambda: get_run(run_id).done >= 40, what="run under way")

    # When: one is SIGKILLed in the middle.
    os.killpg(victim.pid, signal.SIGKILL)

    # Then: the other finishes it (its rescue runs within the heartbeat timeout).
    wait_finished(run_id, timeout=90)
    assert_exact(run_id, 300)
    assert survivor.proc.poll() is None
    assert "messages of dead workers back in their queue" in survivor.log()


@pytest.mark.slow
def test_every_worker_killed_then_a_new_one_finishes_the_run(workers):
    first = workers.start(processes=1, threads=4, env=FAST)
    run_id = launch_test_run(make_tests(60, 0.1), executor="tests.support.targets:counted_sleep")
    wait_until(lambda: get_run(run_id).done >= 5, what="run under way")
    os.killpg(first.pid, signal.SIGKILL)
    first.proc.wait(10)
    stuck = scalar("SELECT count(*) FROM dramatiq.queue WHERE state = 'consumed'")
    assert stuck > 0  # messages the dead worker had claimed

    workers.start(processes=1, threads=4, env=FAST)
    wait_finished(run_id, timeout=60)
    assert_exact(run_id, 60)


def test_a_superseded_claim_cannot_report(database_url):
    # Given: a member claimed under token A, then rescued and claimed again under B.
    run_id = launch_test_run([{"id": "a"}, {"id": "b"}], executor="tests.support.targets:noop")
    message_id = scalar(
        "SELECT message_id FROM rhesis.test_results WHERE run_id=:r AND test_id='a'", r=run_id
    )
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    with db.begin() as conn:
        conn.execute(
            text("UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = :m"),
            {"m": message_id},
        )
        conn.execute(
            text(
                "INSERT INTO rhesis.claims (message_id, worker_id, token, queue_name) "
                "VALUES (:m, gen_random_uuid(), :t, 'rhesis-tests')"
            ),
            {"m": message_id, "t": new},
        )

    # When: the old holder reports success.
    stale = record_outcome(
        run_id,
        "a",
        status="passed",
        claim=(str(message_id), old),
        ack=(str(message_id), "rhesis-tests"),
    )

    # Then: refused, nothing counted, the message still belongs to the new claim.
    assert stale.fenced_out and not stale.recorded
    assert get_run(run_id).done == 0
    assert (
        scalar("SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=message_id)
        == "consumed"
    )
    # The current holder's report counts, once.
    current = record_outcome(run_id, "a", status="passed", claim=(str(message_id), new))
    assert current.recorded and get_run(run_id).done == 1
    again = record_outcome(run_id, "a", status="failed", claim=(str(message_id), new))
    assert not again.recorded and get_run(run_id).passed == 1


def heartbeats() -> dict[str, datetime]:
    """Last heartbeat of every registered, running worker, by id."""
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT id, heartbeat_at FROM rhesis.workers WHERE stopped_at IS NULL")
        ).all()
    return {str(worker_id): at for worker_id, at in rows}


def wait_for_rescue_passes_after(moment: datetime, workers_expected: int) -> None:
    """Wait until every worker has run a heartbeat rescue that began after *moment*.

    A worker's heartbeat thread writes a heartbeat, then rescues, then waits an interval:
    a heartbeat later than *moment* followed by the next one brackets such a rescue."""

    def each_beat_after_moment():
        beats = heartbeats()
        late = len(beats) == workers_expected and all(at > moment for at in beats.values())
        return beats if late else None

    after = wait_until(each_beat_after_moment, what=f"a heartbeat of each worker after {moment}")
    wait_until(
        lambda: all(heartbeats()[w] > at for w, at in after.items()),
        what="the heartbeat after that (its rescue done)",
    )


@pytest.mark.slow
def test_a_test_longer_than_the_heartbeat_timeout_on_a_live_worker_is_not_rescued(workers):
    worker = workers.start(processes=1, threads=2, env=FAST)
    run_id = launch_test_run(
        [{"id": "long", "sleep_s": 8}],
        executor="tests.support.targets:counted_sleep",
        options={"time_limit_ms": 60_000},
    )
    # A second worker sweeps too: it must see the first one alive.
    other = workers.start(processes=1, threads=2, env=FAST)
    wait_until(lambda: executions("long") == 1, what="the long test executing")
    claimed_at = scalar("SELECT claimed_at FROM rhesis.claims WHERE queue_name = 'rhesis-tests'")

    # When: both workers rescue while its claim is older than the heartbeat timeout.
    timeout = timedelta(seconds=float(FAST["RHESIS_HEARTBEAT_TIMEOUT_S"]))
    wait_for_rescue_passes_after(claimed_at + timeout, workers_expected=2)
    assert get_run(run_id).done == 0, "the test ended before the rescues: too short"

    # Then: it was left to its worker (its first claim, one execution), which finishes it.
    assert scalar("SELECT array_agg(claimed_at) FROM rhesis.claims") == [claimed_at]
    assert executions("long") == 1
    assert wait_finished(run_id, timeout=30).status == "COMPLETED"
    assert executions("long") == 1
    assert get_results(run_id)[0]["attempts"] == 1
    assert "back in their queue" not in worker.log() + other.log()


def test_two_sweeps_at_once_one_sweeps_the_other_says_so(database_url):
    with db.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SWEEP_LOCK_KEY})
        holder.commit()
        busy = Sweeper.from_settings().run_once()
        out = cli.run("rhesis-monitor", "sweep", env={"DATABASE_URL": database_url})
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK_KEY})
        holder.commit()
    assert busy.ran is False
    assert out.returncode == 0 and "another sweep is running" in out.stdout

    # Two at once: the first is held inside its first step (its clock blocks until
    # released) while the second starts. Exactly one runs; the other says so.
    inside, release = threading.Event(), threading.Event()

    def held_clock():
        inside.set()
        release.wait(30)
        return datetime.now(timezone.utc)

    first = []
    holder_thread = threading.Thread(
        target=lambda: first.append(Sweeper.from_settings(clock=held_clock).run_once())
    )
    holder_thread.start()
    try:
        assert inside.wait(30), "the first sweep never reached its first step"
        second = Sweeper.from_settings().run_once()
    finally:
        release.set()
        holder_thread.join(30)
    assert second.ran is False
    assert [r.ran for r in first] == [True]
    # Once the first is done, the next sweep runs.
    assert Sweeper.from_settings().run_once().ran is True


def test_sweeping_twice_changes_nothing_the_second_time(database_url):
    old = datetime.now(timezone.utc) - timedelta(days=30)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dramatiq.queue (message_id, queue_name, state, message, mtime) "
                "SELECT gen_random_uuid(), 'q', 'done', '{}', (CAST(:at AS timestamptz) AT TIME ZONE 'UTC') "
                "FROM generate_series(1, 5)"
            ),
            {"at": old},
        )
    first = Sweeper.from_settings().run_once()
    second = Sweeper.from_settings().run_once()
    assert first.purged_messages == 5
    assert (
        second.rescued,
        second.timed_out,
        second.lost,
        second.purged_messages,
        second.purged_workers,
    ) == (0, 0, 0, 0, 0)


@pytest.mark.slow
def test_an_overdue_run_ends_partial_with_its_unfinished_tests_lost(workers):
    # Given: a run whose first test finished and whose others never ran.
    run_id = launch_test_run(
        [{"id": "done"}, {"id": "never-1"}, {"id": "never-2"}],
        executor="tests.support.targets:noop",
    )
    record_outcome(run_id, "done", status="passed")
    with db.begin() as conn:  # nobody will run the others
        conn.execute(
            text("UPDATE dramatiq.queue SET state = 'rejected' WHERE queue_name = 'rhesis-tests'")
        )

    workers.start(processes=1, threads=2)  # to run the callback

    # When: the sweeper runs 25 hours later (injected clock).
    later = datetime.now(timezone.utc) + timedelta(hours=25)
    dry = Sweeper.from_settings(clock=lambda: later).run_once(dry_run=True)
    assert (dry.expired_runs, dry.lost) == (1, 2) and get_run(run_id).done == 1
    result = Sweeper.from_settings(clock=lambda: later).run_once()

    # Then: the two are lost, the run is finished through the normal callback, once.
    assert (result.expired_runs, result.lost) == (1, 2)
    run = wait_finished(run_id, timeout=30)
    assert (run.status, run.passed, run.lost) == ("PARTIAL", 1, 2)
    assert {r["test_id"]: r["status"] for r in get_results(run_id)} == {
        "done": "passed",
        "never-1": "lost",
        "never-2": "lost",
    }
    assert run.collected_count == 1 and len(hook_calls(run_id)) == 1
    # Sweeping again changes nothing.
    assert Sweeper.from_settings(clock=lambda: later).run_once().lost == 0


def test_monitor_sweep_json_and_dry_run(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(monitor.main, ["sweep", "--json", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert '"dry_run": true' in result.output and '"ran": true' in result.output


@pytest.mark.slow
def test_registered_workers_deregister_on_clean_stop(workers):
    worker = workers.start(processes=1, threads=2, env=FAST)
    assert scalar("SELECT count(*) FROM rhesis.workers WHERE stopped_at IS NULL") == 1
    assert worker.stop() == 0
    assert scalar("SELECT count(*) FROM rhesis.workers WHERE stopped_at IS NOT NULL") == 1


def test_a_member_past_its_time_limit_on_a_dead_worker_becomes_a_timeout(database_url):
    from rhesis_pipeline.maintenance.rescue import RescueConfig, Rescuer

    # Given: a member claimed at T by a worker that is gone: no lock held, last heartbeat a
    # minute before T (past the lock grace: not reconnecting, dead).
    run_id = launch_test_run(
        [{"id": "hung"}, {"id": "fine"}],
        executor="tests.support.targets:noop",
        # One retry: a lost attempt within the time limit is run again (with none left it
        # would end as "the worker process died", see test_isolation.py).
        options={"time_limit_ms": 10_000, "max_retries": 1},
    )
    record_outcome(run_id, "fine", status="passed")
    message_id = scalar(
        "SELECT message_id FROM rhesis.test_results WHERE run_id=:r AND test_id='hung'", r=run_id
    )
    claimed_at = datetime.now(timezone.utc)
    worker = "00000000-0000-0000-0000-0000000000aa"
    with db.begin() as conn:
        fake_worker(conn, worker, claimed_at - timedelta(minutes=1))
        fake_claim(conn, message_id, worker, claimed_at, started=True)

    # Within its time limit plus grace it would be run again (dry run only) ...
    # (settle_s=0: this test's fresh session may judge at once; see find_orphans.)
    config = RescueConfig(member_grace_s=30, settle_s=0)
    soon = Rescuer(config, clock=lambda: claimed_at + timedelta(seconds=5))
    assert soon.run_once(dry_run=True).requeued == 1
    # ... past it, it is a timeout, stored through the normal path (the run finishes).
    later = Rescuer(config, clock=lambda: claimed_at + timedelta(seconds=41))
    result = later.run_once()
    assert (result.timed_out, result.requeued) == (1, 0)
    hung = {r["test_id"]: r for r in get_results(run_id)}["hung"]
    assert hung["status"] == "error"
    assert hung["error"] == (
        "timed out: its worker stopped answering and it ran past its time limit of 10s"
    )
    assert (
        scalar("SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=message_id)
        == "rejected"
    )
    assert get_run(run_id).done == 2  # the callback is enqueued
    assert later.run_once().timed_out == 0  # idempotent
