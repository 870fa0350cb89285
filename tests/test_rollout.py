"""Rolling updates (issue #25): old worker processes are SIGTERMed one by one while new
ones take over, as a Kubernetes Deployment with maxSurge 1 / maxUnavailable 0 does, under
a running 2,000-test run — and nothing is lost, counted twice or run twice.

Every execution is logged by the target ("id pid", tests/support/targets.py: ``timed``,
``timed_async``) to a file, so re-executions are counted without the database; every
claim is copied to ``public.claim_log`` by a trigger on ``rhesis.claims`` (its rows are
deleted at ack), so "no claim after SIGTERM" is read from the database's own clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db
from rhesis_pipeline.worker import shutdown

from .support.runs import results_by_id, scalar, wait_finished
from .support.waiting import wait_until
from .support.workers import WorkerProcess

#: Longest time limit of the tests here (s): the grace derives from it.
TIME_LIMIT_S = 5.0
FAST = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "5"}


def make_tests(n: int, *, prefix: str, fail_every: int, long_every: int = 0) -> list[dict]:
    """*n* tests of 20-100 ms; every *fail_every*-th one fails (expect_pass false); every
    *long_every*-th one takes 1 s (a stopping worker finishes it: it is shorter than the
    drain, and it keeps the worker stopping for a while)."""
    return [
        {
            "id": f"{prefix}{i:04d}",
            "sleep_s": 1.0 if long_every and i % long_every == 1 else 0.02 + (i % 9) * 0.01,
            "expect_pass": i % fail_every != 0,
        }
        for i in range(n)
    ]


def log_claims() -> None:
    """Copy every claim (worker, the claim transaction's start) to public.claim_log."""
    with db.begin() as conn:
        conn.execute(
            text(
                """
                CREATE TABLE public.claim_log (worker_id uuid, claimed_at timestamptz);
                CREATE FUNCTION public.log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO public.claim_log VALUES (NEW.worker_id, NEW.claimed_at);
                    RETURN NEW;
                END $$;
                CREATE TRIGGER log_claim AFTER INSERT ON rhesis.claims
                    FOR EACH ROW EXECUTE FUNCTION public.log_claim();
                """
            )
        )


def worker_ids_of(command: WorkerProcess) -> list[str]:
    """The registered worker ids of *command*'s worker processes (its children)."""
    children = [
        int(pid)
        for pid in Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text().split()
    ]
    with db.connect() as conn:
        return [
            str(row[0])
            for row in conn.execute(
                text("SELECT id FROM rhesis.workers WHERE pid = ANY(:p) AND stopped_at IS NULL"),
                {"p": children},
            )
        ]


def db_now():
    return scalar("SELECT clock_timestamp()")


def executions(log: Path) -> Counter[str]:
    lines = log.read_text().split("\n") if log.exists() else []
    return Counter(line.split()[0] for line in lines if line)


@pytest.mark.slow
def test_a_rolling_update_under_a_2000_test_run_loses_nothing_and_runs_nothing_twice(
    workers, tmp_path
):
    # Given: two "old" worker commands (one process, 4 threads each) executing a 2,000-test
    # run on the event loop (async target) and a 500-test run on threads, the tests
    # 20-100 ms (a tenth of the thread tests 1 s); every claim is logged.
    log_claims()
    exec_log = tmp_path / "executions.log"
    env = {**FAST, "RHESIS_TEST_EXEC_LOG": str(exec_log)}
    old = [workers.start(processes=1, threads=4, env=env) for _ in range(2)]
    options = {"max_retries": 0, "time_limit_ms": int(TIME_LIMIT_S * 1000)}
    on_loop = launch_test_run(
        make_tests(2000, prefix="a", fail_every=10),
        executor="tests.support.targets:timed_async",
        options=options,
    )
    on_threads = launch_test_run(
        make_tests(500, prefix="t", fail_every=5, long_every=10),
        executor="tests.support.targets:timed",
        options=options,
    )
    wait_until(lambda: get_run(on_loop).done >= 300, timeout=60, what="300 tests done")
    assert get_run(on_loop).done < 1500, "the run must still be under way when the rollout starts"

    # When: the Deployment controller rolls: for each old command, a new one starts and is
    # ready, then the old one is sent SIGTERM and must exit within the grace.
    grace_s = shutdown.grace_s(TIME_LIMIT_S)
    stopped = []
    for command in old:
        ids = worker_ids_of(command)
        assert len(ids) == 1, ids
        workers.start(processes=1, threads=4, env=env)  # waits until ready
        done_before = get_run(on_loop).done + get_run(on_threads).done
        signalled_at = db_now()
        started = time.monotonic()
        command.proc.terminate()
        code = command.proc.wait(grace_s)
        took = time.monotonic() - started
        stopped.append((ids[0], signalled_at, took, done_before))
        assert code == 0, command.log()[-3000:]
        print(f"old worker exited {took:.2f} s after SIGTERM (grace {grace_s:.0f} s)")

    # Then: both runs finish with exact results: one outcome per test, the expected
    # pass/fail counts, one callback each.
    for run_id, n, fail_every in ((on_loop, 2000, 10), (on_threads, 500, 5)):
        run = wait_finished(run_id, timeout=120)
        failed = len(range(0, n, fail_every))
        assert (run.status, run.total, run.done) == ("COMPLETED", n, n), run
        assert (run.passed, run.failed, run.errored, run.lost) == (n - failed, failed, 0, 0)
        assert run.collected_count == 1
        results = results_by_id(run_id)
        assert len(results) == n
        assert {r["attempts"] for r in results.values()} == {1}
    # Nothing is left claimed or queued.
    assert scalar("SELECT count(*) FROM rhesis.claims") == 0
    assert scalar("SELECT count(*) FROM dramatiq.queue WHERE state IN ('queued', 'consumed')") == 0
    # Every test is shorter than the drain: none ran twice (the target's side-channel).
    ran = executions(exec_log)
    assert len(ran) == 2500
    assert [t for t, count in ran.items() if count > 1] == []
    # Each old worker stopped claiming at SIGTERM (at most the one claim statement already
    # under way, whose rows share its transaction's start) and deregistered.
    for worker_id, signalled_at, _, _ in stopped:
        with db.connect() as conn:
            after = conn.execute(
                text(
                    "SELECT count(DISTINCT claimed_at) FROM public.claim_log "
                    "WHERE worker_id = :w AND claimed_at > :t"
                ),
                {"w": worker_id, "t": signalled_at},
            ).scalar()
            claims = conn.execute(
                text("SELECT count(*) FROM public.claim_log WHERE worker_id = :w"),
                {"w": worker_id},
            ).scalar()
            state = conn.execute(
                text("SELECT stopped_at IS NOT NULL FROM rhesis.workers WHERE id = :w"),
                {"w": worker_id},
            ).scalar()
        print(f"worker {worker_id[:8]}: {claims} claims, {after} claim statements after SIGTERM")
        assert claims > 0  # the log works: this check can fail
        assert after <= 1, f"worker {worker_id} claimed {after} times after SIGTERM"
        assert state is True


def claim_statements_after(worker_id: str, at) -> int:
    """Claim statements of *worker_id* whose transaction started after *at* (the rows of
    one statement share its start)."""
    return scalar(
        "SELECT count(DISTINCT claimed_at) FROM public.claim_log "
        "WHERE worker_id = :w AND claimed_at > :t",
        w=worker_id,
        t=at,
    )


@pytest.mark.slow
def test_on_sigterm_a_worker_stops_claiming_at_once_and_gives_back_what_it_has_not_started(
    workers, tmp_path
):
    # Given: one worker claiming steadily: 600 thread tests of 20-100 ms, 4 threads.
    log_claims()
    exec_log = tmp_path / "executions.log"
    env = {**FAST, "RHESIS_TEST_EXEC_LOG": str(exec_log)}
    old = workers.start(processes=1, threads=4, env=env)
    run_id = launch_test_run(
        make_tests(600, prefix="t", fail_every=7),
        executor="tests.support.targets:timed",
        options={"max_retries": 0},
    )
    wait_until(lambda: get_run(run_id).done >= 60, timeout=60, what="60 tests done")
    (worker_id,) = worker_ids_of(old)
    # When: it is sent SIGTERM.
    signalled_at = db_now()
    old.proc.terminate()
    assert old.proc.wait(shutdown.grace_s(TIME_LIMIT_S)) == 0, old.log()[-3000:]
    # Then: it claimed nothing more (at most the one claim statement already under way
    # when the signal came), held nothing when it exited, and deregistered.
    after = claim_statements_after(worker_id, signalled_at)
    assert after <= 1, f"{after} claim statements after SIGTERM:\n{old.log()[-3000:]}"
    assert scalar("SELECT count(*) FROM rhesis.claims WHERE worker_id = :w", w=worker_id) == 0
    assert scalar("SELECT stopped_at IS NOT NULL FROM rhesis.workers WHERE id = :w", w=worker_id)
    done = get_run(run_id).done
    assert done < 600, "the run must outlast the stop"
    # What it gave back, a new worker runs: every test once, none counted twice.
    workers.start(processes=1, threads=4, env=env)
    run = wait_finished(run_id, timeout=60)
    failed = len(range(0, 600, 7))
    assert (run.passed, run.failed, run.errored, run.collected_count) == (
        600 - failed,
        failed,
        0,
        1,
    )
    assert {r["attempts"] for r in results_by_id(run_id).values()} == {1}
    ran = executions(exec_log)
    assert len(ran) == 600 and max(ran.values()) == 1


def test_the_signal_handler_stops_claiming_first_then_runs_the_one_it_replaced():
    # Given: a handler already installed for SIGHUP (dramatiq's, in a worker process).
    called = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: called.append(signum))
    try:
        shutdown.reset()
        shutdown.install_signal_handlers()
        shutdown.install_signal_handlers()  # twice: still one handler in front
        assert not shutdown.stopping()
        # When: the signal comes.
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: called, timeout=5, what="the handler ran")
        # Then: claiming stopped, and the replaced handler ran once.
        assert shutdown.stopping() and called == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
        shutdown.reset()


def test_the_grace_is_the_longest_time_limit_plus_the_drain():
    drain = shutdown.grace_s(0)
    assert drain >= shutdown.INFLIGHT_DRAIN_S + shutdown.DRAIN_TIMEOUT_S
    assert shutdown.grace_s(60) == 60 + drain


@pytest.mark.slow
def test_a_grace_shorter_than_the_tests_loses_nothing_and_reruns_only_what_was_cut(
    workers, tmp_path
):
    # Given: an old and a new worker, ready, executing 20 tests of 1.5 s on their event
    # loops. (Few: a rescued test that was running is a suspect, and suspects run one at a
    # time per process on the careful path — 300 cut tests of 3 s took about 3 s each to
    # run again.)
    exec_log = tmp_path / "executions.log"
    env = {**FAST, "RHESIS_TEST_EXEC_LOG": str(exec_log)}
    old = workers.start(processes=1, threads=2, env=env)
    workers.start(processes=1, threads=2, env=env)
    (old_child,) = Path(f"/proc/{old.pid}/task/{old.pid}/children").read_text().split()
    run_id = launch_test_run(
        [{"id": f"a{i:03d}", "sleep_s": 1.5} for i in range(20)],
        executor="tests.support.targets:timed_async",
        options={"max_retries": 2, "time_limit_ms": 10_000},
    )
    wait_until(lambda: sum(executions(exec_log).values()) >= 20, timeout=30, what="20 running")
    # When: the platform's grace (0.5 s) is shorter than the tests: SIGTERM, then SIGKILL.
    old.proc.terminate()
    with pytest.raises(subprocess.TimeoutExpired):
        old.proc.wait(0.5)
    old.kill()
    # Then: every test has one outcome, passed; one callback; nothing left behind.
    run = wait_finished(run_id, timeout=120)
    assert (run.status, run.passed, run.collected_count) == ("COMPLETED", 20, 1), run
    assert scalar("SELECT count(*) FROM dramatiq.queue WHERE state IN ('queued', 'consumed')") == 0
    # Re-executions: only tests the old worker was executing and did not finish (its pid
    # logged their execution, another worker stored their outcome).
    results = results_by_id(run_id)
    lines = [line.split() for line in exec_log.read_text().splitlines() if line]
    cut = {
        test_id
        for test_id, pid in lines
        if pid == old_child and not str(results[test_id]["worker"]).endswith(f":{old_child}")
    }
    ran = executions(exec_log)
    again = {test_id for test_id, count in ran.items() if count > 1}
    counted = {test_id for test_id, r in results.items() if r["attempts"] > 1}
    print(f"cut by SIGKILL: {len(cut)}; ran again: {len(again)}; attempts counted: {len(counted)}")
    assert cut, "the grace was meant to cut tests short"
    assert again <= cut and counted <= cut
    assert max(ran.values()) <= 2
