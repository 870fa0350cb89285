"""Fan-out/fan-in on real Postgres with real worker processes: the run's specification."""

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.runs.messages import callback_message_id
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db, engine

from .support.runs import hook_calls, results_by_id, scalar, wait_finished
from .support.waiting import wait_until

FAST_RETRIES = {"max_retries": 2, "min_backoff_ms": 10, "max_backoff_ms": 50}


def make_tests(n: int, **extra) -> list[dict]:
    return [{"id": f"t{i:05d}", "prompt": f"prompt {i}", **extra} for i in range(n)]


@pytest.mark.slow
def test_200_passing_tests_complete_and_the_callback_runs_once(workers):
    workers.start(processes=1, threads=8)
    run_id = launch_test_run(
        make_tests(200), executor="tests.support.targets:echo", name="all-pass"
    )

    run = wait_finished(run_id)

    assert run.status == "COMPLETED"
    assert (run.total, run.done, run.passed, run.failed, run.errored) == (200, 200, 200, 0, 0)
    assert run.collected_count == 1
    assert len(hook_calls(run_id)) == 1
    assert {r["status"] for r in get_results(run_id)} == {"passed"}
    assert run.started_at is not None and run.finished_at >= run.started_at


@pytest.mark.slow
def test_ten_members_failing_every_attempt_make_the_run_partial(workers):
    workers.start(processes=1, threads=8)
    tests = make_tests(200)
    for t in tests[::20]:
        t["fail"] = True  # 10 of 200
    run_id = launch_test_run(
        tests, executor="tests.support.targets:boom_if_asked", options=FAST_RETRIES
    )

    run = wait_finished(run_id)

    assert run.status == "PARTIAL"
    assert (run.passed, run.failed, run.errored) == (190, 0, 10)
    results = results_by_id(run_id)
    for t in tests[::20]:
        r = results[t["id"]]
        assert r["status"] == "error"
        assert r["error"] == f"RuntimeError: boom in {t['id']}"
        assert r["attempts"] == 3  # one attempt and two retries
    assert all(r["attempts"] == 1 for tid, r in results.items() if r["status"] == "passed")
    assert run.collected_count == 1 and len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_a_run_whose_every_test_errors_is_failed(workers):
    workers.start(processes=1, threads=4)
    run_id = launch_test_run(
        make_tests(20), executor="tests.support.targets:always_raise", options={"max_retries": 0}
    )
    run = wait_finished(run_id)
    assert run.status == "FAILED" and run.errored == 20
    assert results_by_id(run_id)["t00003"]["error"] == "ValueError: cannot run t00003"


@pytest.mark.slow
def test_failed_metrics_are_failed_not_errored_and_the_run_completes(workers):
    workers.start(processes=1, threads=4)
    tests = make_tests(10)
    tests[4]["expect_pass"] = False
    run_id = launch_test_run(tests, executor="tests.support.targets:echo")
    run = wait_finished(run_id)
    assert run.status == "COMPLETED" and (run.passed, run.failed) == (9, 1)
    assert results_by_id(run_id)["t00004"]["output"] == "prompt 4"


def test_a_run_with_no_tests_is_rejected_and_nothing_is_stored(database_url):
    with pytest.raises(InvalidSubmission, match="at least one test"):
        launch_test_run([], executor="tests.support.targets:noop")
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 0


@pytest.mark.parametrize(
    ("tests", "executor", "options", "fragment"),
    [
        (
            [{"id": "a"}, {"id": "a"}],
            "tests.support.targets:noop",
            None,
            "tests\\[1\\].id 'a' duplicates tests\\[0\\].id",
        ),
        ([{"prompt": "no id"}], "tests.support.targets:noop", None, "tests\\[0\\].id is missing"),
        (
            [{"id": "a"}],
            "tests.support.nowhere:fn",
            None,
            "cannot import module 'tests.support.nowhere'",
        ),
        ([{"id": "a"}], "tests.support.targets:missing", None, "has no attribute 'missing'"),
        ([{"id": "a"}], "not a target", None, "must be 'module.path:function'"),
        ([{"id": "a"}], {"type": "smtp"}, None, "executor.type 'smtp' is not supported"),
        ([{"id": "a"}], {"type": "http", "url": "localhost/x"}, None, "is not an absolute http"),
        ([{"id": "a"}], "tests.support.targets:noop", {"retries": 3}, "unknown key\\(s\\) retries"),
        (
            [{"id": "a"}],
            "tests.support.targets:noop",
            {"max_retries": -1},
            "max_retries must be 0..20",
        ),
        (["just a string"], "tests.support.targets:noop", None, "tests\\[0\\] must be an object"),
    ],
)
def test_malformed_submissions_name_the_problem_and_store_nothing(
    database_url, tests, executor, options, fragment
):
    with pytest.raises(InvalidSubmission, match=fragment):
        launch_test_run(tests, executor=executor, options=options)
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 0


@pytest.mark.slow
def test_a_member_delivered_again_after_it_finished_changes_nothing(workers):
    workers.start(processes=1, threads=4)
    run_id = launch_test_run(make_tests(5), executor="tests.support.targets:echo")
    before = wait_finished(run_id)
    message_id = scalar(
        "SELECT message_id FROM rhesis.test_results WHERE run_id = :r AND test_id = 't00002'",
        r=run_id,
    )

    # A finished member's message went with its outcome (acked by deletion).
    assert (
        scalar(
            "SELECT count(*) FROM dramatiq.queue q JOIN rhesis.test_results r "
            "ON r.message_id = q.message_id WHERE r.run_id = :r",
            r=run_id,
        )
        == 0
    )

    # When: the finished member's own message is delivered again (as after a crash
    # between its outcome and its ack) and a second message for the same test is sent.
    from rhesis_pipeline.actors import execute_single_test

    again = execute_single_test.message(run_id, "t00002").copy(message_id=str(message_id))
    execute_single_test.broker.enqueue(again)
    extra = execute_single_test.send(run_id, "t00002")
    wait_until(
        lambda: (
            scalar(
                "SELECT count(*) FROM dramatiq.queue WHERE message_id IN (:a, :b) "
                "AND state = 'done'",
                a=str(message_id),
                b=extra.message_id,
            )
            == 2
        ),
        what="both deliveries processed",
    )

    # Then: nothing changed.
    after = get_run(run_id)
    assert (after.status, after.done, after.passed, after.collected_count) == (
        before.status,
        before.done,
        before.passed,
        before.collected_count,
    )
    assert results_by_id(run_id)["t00002"]["attempts"] == 1
    assert len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_2000_tests_on_two_processes_count_exactly_and_call_back_once(workers):
    workers.start(processes=2, threads=6)
    run_id = launch_test_run(make_tests(2000), executor="tests.support.targets:noop")
    run = wait_finished(run_id, timeout=90)
    assert run.status == "COMPLETED" and run.passed == 2000 and run.done == 2000
    assert scalar("SELECT count(*) FROM rhesis.test_results WHERE run_id = :r", r=run_id) == 2000
    assert run.collected_count == 1 and len(hook_calls(run_id)) == 1
    # Both processes took part.
    workers_seen = scalar(
        "SELECT count(DISTINCT worker) FROM rhesis.test_results WHERE run_id = :r", r=run_id
    )
    assert workers_seen == 2


@pytest.mark.slow
def test_launch_inside_a_session_that_rolls_back_leaves_nothing_and_runs_nothing(workers):
    workers.start(processes=1, threads=2)
    with Session(engine.get()) as session:
        run_id = launch_test_run(
            make_tests(3), executor="tests.support.targets:echo", session=session
        )
        # Visible inside the caller's transaction ...
        assert session.execute(text("SELECT count(*) FROM rhesis.test_results")).scalar() == 3
        session.rollback()
    # ... and gone with it.
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 0

    # A committed one runs: proof the workers were there to run the rolled-back one.
    with Session(engine.get()) as session:
        committed = launch_test_run(
            make_tests(3), executor="tests.support.targets:echo", session=session
        )
        session.commit()
    assert wait_finished(committed).status == "COMPLETED"
    assert scalar("SELECT count(*) FROM rhesis.test_runs WHERE id = :r", r=run_id) == 0


@pytest.mark.slow
def test_status_is_queued_then_in_progress_when_the_first_member_starts(workers):
    run_id = launch_test_run(make_tests(2, sleep_s=1.5), executor="tests.support.targets:sleep")
    assert get_run(run_id).status == "QUEUED"
    workers.start(processes=1, threads=2)
    wait_until(lambda: get_run(run_id).status == "IN_PROGRESS", what="IN_PROGRESS")
    progress = get_run(run_id)
    assert progress.done == 0 and progress.percent == 0.0
    assert {r["status"] for r in get_results(run_id)} == {"queued"}  # no outcome yet
    assert wait_finished(run_id).status == "COMPLETED"
    assert get_run(run_id).percent == 100.0


@pytest.mark.slow
def test_time_limit_on_the_last_attempt_is_an_error(workers):
    workers.start(processes=1, threads=2)
    run_id = launch_test_run(
        [{"id": "slow", "sleep_s": 5}, {"id": "quick", "sleep_s": 0}],
        executor="tests.support.targets:sleep",
        options={"max_retries": 0, "time_limit_ms": 500},
    )
    run = wait_finished(run_id, timeout=30)
    assert run.status == "PARTIAL"
    assert results_by_id(run_id)["slow"]["error"] == "time limit of 0.5s exceeded"


@pytest.mark.slow
def test_tenant_travels_to_members_their_sessions_and_the_callback(workers):
    workers.start(processes=1, threads=2)
    with_tenant = launch_test_run(
        [{"id": "a"}],
        executor="tests.support.targets:tenant_probe",
        organization_id="org-1",
        user_id="user-9",
    )
    without = launch_test_run([{"id": "b"}], executor="tests.support.targets:tenant_probe")
    wait_finished(with_tenant)
    wait_finished(without)

    assert results_by_id(with_tenant)["a"]["output"] == {
        "accessor": ["org-1", "user-9"],
        "session": ["org-1", "user-9"],
    }
    # No tenant: the accessor says so and reading the settings does not raise.
    assert results_by_id(without)["b"]["output"] == {"accessor": None, "session": ["", ""]}
    (summary,) = hook_calls(with_tenant)
    assert (summary["organization_id"], summary["user_id"]) == ("org-1", "user-9")


def test_tenant_context_of_the_caller_is_used_by_default(database_url):
    from rhesis_pipeline.storage.tenant_context import tenant_context

    with tenant_context("org-ctx", "user-ctx"):
        run_id = launch_test_run([{"id": "a"}], executor="tests.support.targets:noop")
    run = get_run(run_id)
    assert (run.organization_id, run.user_id) == ("org-ctx", "user-ctx")
    options = scalar("SELECT message->'options'->'tenant' FROM dramatiq.queue")
    assert options == {"organization_id": "org-ctx", "user_id": "user-ctx"}


@pytest.mark.slow
def test_a_hook_that_raises_is_logged_and_the_run_stays_finished(workers):
    worker = workers.start(processes=1, threads=2)
    run_id = launch_test_run(
        [{"id": "a"}], executor="tests.support.targets:noop", name="hook-raises"
    )
    run = wait_finished(run_id)
    assert run.status == "COMPLETED"
    # The callback message acked on its own queue: its hooks ran and it has ended (a
    # retry would have moved it to the delay queue and counted the attempt).
    callback = callback_message_id(run_id)
    wait_until(
        lambda: (
            scalar(
                "SELECT queue_name || ':' || state::text FROM dramatiq.queue WHERE message_id = :m",
                m=callback,
            )
            == "rhesis-callbacks:done"
        ),
        what="callback acked",
    )
    assert "hook failed on purpose" in worker.log()
    assert "run-finished hook" in worker.log()
    # The callback was not retried because of the hook.
    retries = scalar(
        "SELECT message->'options'->>'retries' FROM dramatiq.queue WHERE message_id = :m",
        m=callback,
    )
    assert retries is None, f"the callback was retried {retries} times"
    assert get_run(run_id).collected_count == 1 and len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_collect_results_delivered_twice_is_harmless(workers):
    workers.start(processes=1, threads=2)
    run_id = launch_test_run(make_tests(3), executor="tests.support.targets:echo")
    first = wait_finished(run_id)
    from rhesis_pipeline.actors import collect_results

    again = collect_results.send(run_id)
    wait_until(
        lambda: (
            scalar(
                "SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=again.message_id
            )
            == "done"
        ),
        what="second callback processed",
    )
    after = get_run(run_id)
    assert (after.status, after.finished_at, after.collected_count) == (
        first.status,
        first.finished_at,
        1,
    )
    assert len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_poison_message_is_rejected_and_the_queue_keeps_flowing(workers):
    worker = workers.start(processes=1, threads=2)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dramatiq.queue (message_id, queue_name, state, message) VALUES "
                "('00000000-0000-0000-0000-00000000dead', 'rhesis-tests', 'queued', "
                '\'{"not": "a dramatiq message"}\')'
            )
        )
    run_id = launch_test_run(make_tests(3), executor="tests.support.targets:echo")
    assert wait_finished(run_id).status == "COMPLETED"
    wait_until(
        lambda: (
            scalar(
                "SELECT state::text FROM dramatiq.queue WHERE message_id = "
                "'00000000-0000-0000-0000-00000000dead'"
            )
            == "rejected"
        ),
        what="poison rejected",
    )
    assert "rejected poison message 00000000-0000-0000-0000-00000000dead" in worker.log()
