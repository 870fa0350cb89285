"""Submission: streamed from any iterable, members' messages built by the database,
nothing stored when the input is bad (in a caller's session too)."""

from __future__ import annotations

import pytest
from dramatiq import Message
from sqlalchemy import text
from sqlalchemy.orm import Session

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db, engine

from .support.runs import scalar, wait_finished


def stored_counts() -> tuple[int, int, int]:
    return (
        scalar("SELECT count(*) FROM rhesis.test_runs"),
        scalar("SELECT count(*) FROM rhesis.test_results"),
        scalar("SELECT count(*) FROM dramatiq.queue"),
    )


def test_member_messages_built_by_the_database_are_dramatiq_messages_of_their_tests(
    database_url,
):
    # Given: a run of three tests for a tenant, with options.
    run_id = launch_test_run(
        [{"id": "a"}, {"id": 7}, {"id": "ü\t\\n"}],
        executor="tests.support.targets:echo",
        organization_id="org-1",
        user_id="user-2",
        options={"max_retries": 1, "time_limit_ms": 5000},
    )
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.test_id, r.position, r.message_id, q.queue_name, q.state::text,"
                " q.message::text FROM rhesis.test_results r"
                " JOIN dramatiq.queue q ON q.message_id = r.message_id"
                " WHERE r.run_id = :id ORDER BY r.position"
            ),
            {"id": run_id},
        ).all()
    # Then: one queued message per test, decoded by dramatiq as execute_single_test of
    # (run, test) with the run's options and tenant, its id the result's message id.
    assert [(r.test_id, r.position) for r in rows] == [("a", 0), ("7", 1), ("ü\t\\n", 2)]
    for row in rows:
        message = Message.decode(row.message.encode())
        assert (row.queue_name, row.state) == ("rhesis-tests", "queued")
        assert message.actor_name == "execute_single_test"
        assert message.queue_name == "rhesis-tests"
        assert tuple(message.args) == (run_id, row.test_id)
        assert message.kwargs == {}
        assert message.message_id == str(row.message_id)
        assert message.options["tenant"] == {"organization_id": "org-1", "user_id": "user-2"}
        assert message.options["max_retries"] == 1
        assert message.options["time_limit"] == 5000
        assert message.message_timestamp > 0


@pytest.mark.slow
def test_tests_from_a_generator_are_streamed_and_run(workers):
    workers.start(processes=1, threads=4)
    run_id = launch_test_run(
        ({"id": f"g{i}", "input": i} for i in range(300)),
        executor="tests.support.targets:echo",
    )
    run = wait_finished(run_id)
    assert (run.status, run.total, run.passed, run.collected_count) == ("COMPLETED", 300, 300, 1)


def test_a_bad_test_late_in_a_generator_stores_nothing(database_url):
    def tests():
        yield from ({"id": i} for i in range(500))
        yield {"id": 3}  # a duplicate, after 500 tests were already streamed

    with pytest.raises(InvalidSubmission, match=r"tests\[500\]\.id '3' duplicates tests\[3\]"):
        launch_test_run(tests(), executor="tests.support.targets:echo")
    assert stored_counts() == (0, 0, 0)

    with pytest.raises(InvalidSubmission, match=r"tests\[2\] must be an object"):
        launch_test_run(iter([{"id": 1}, {"id": 2}, "x"]), executor="tests.support.targets:echo")
    with pytest.raises(InvalidSubmission, match="at least one test"):
        launch_test_run(iter([]), executor="tests.support.targets:echo")
    assert stored_counts() == (0, 0, 0)


def test_bad_input_in_a_callers_session_rolls_back_only_the_launch(database_url):
    # Given: a caller's session that wrote a row of its own.
    with Session(engine.get()) as session:
        session.execute(text("INSERT INTO public.test_records (key, pid) VALUES ('mine', 1)"))
        # When: a launch in that session fails on its 3rd test.
        with pytest.raises(InvalidSubmission, match=r"tests\[2\]\.id is missing"):
            launch_test_run(
                [{"id": 1}, {"id": 2}, {"name": "no id"}],
                executor="tests.support.targets:echo",
                session=session,
            )
        # Then: the session goes on, and a good launch after it commits with its row.
        run_id = launch_test_run(
            [{"id": 1}], executor="tests.support.targets:echo", session=session
        )
        session.commit()
    assert scalar("SELECT count(*) FROM public.test_records WHERE key = 'mine'") == 1
    assert stored_counts() == (1, 1, 1)
    assert scalar("SELECT total FROM rhesis.test_runs WHERE id = :id", id=run_id) == 1
