"""Fair scheduling across tenants (issue #12): members of different organizations are
claimed round-robin by organization, and RHESIS_TENANT_MAX_RUNNING caps what one
organization holds. Real Postgres, real worker subprocesses."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support.runs import results_by_id, wait_finished
from .support.waiting import wait_until

#: Each finished test's execution interval (start, end) by organization, from the
#: workers' own start time and measured duration: what ran when, read after the fact.
EXECUTIONS = text(
    "SELECT r.organization_id, t.started_at, "
    "t.started_at + t.duration_ms * interval '1 millisecond' "
    "FROM rhesis.test_results t JOIN rhesis.test_runs r ON r.id = t.run_id "
    "WHERE t.run_id = ANY(CAST(:runs AS uuid[])) AND t.started_at IS NOT NULL"
)


def most_at_once(intervals: list[tuple]) -> int:
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    for _, step in events:  # at equal instants an end (-1) sorts before a start (+1)
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.slow
def test_a_small_run_is_not_held_behind_another_organizations_backlog(workers):
    # Given: workers busy with organization A's 50,000 tests.
    workers.start(processes=2, threads=4)
    big = launch_test_run(
        [{"id": i} for i in range(50_000)],
        executor="tests.support.targets:noop",
        organization_id="org-a",
        name="a-big",
    )
    wait_until(lambda: get_run(big).done > 500, timeout=60, what="A under way")

    # When: organization B launches 20 tests.
    small = launch_test_run(
        [{"id": i} for i in range(20)],
        executor="tests.support.targets:noop",
        organization_id="org-b",
        name="b-small",
    )

    # Then: B's tests are claimed in turn with A's, not after A's backlog: B finishes
    # first, and while B's 20 tests ran, A started only about as many (the claims
    # alternate; first-in-first-out would have run the ~49,000 A tests queued before B).
    b = wait_finished(small, timeout=120)
    assert b.passed == 20
    with db.connect() as conn:
        b_created, b_last_start = conn.execute(
            text(
                "SELECT r.created_at, max(t.started_at) FROM rhesis.test_runs r "
                "JOIN rhesis.test_results t ON t.run_id = r.id WHERE r.id = :r "
                "GROUP BY r.created_at"
            ),
            {"r": small},
        ).one()
        a_meanwhile = conn.execute(
            text(
                "SELECT count(*) FROM rhesis.test_results WHERE run_id = :r "
                "AND started_at > :since AND started_at <= :until"
            ),
            {"r": big, "since": b_created, "until": b_last_start},
        ).scalar()
        a_finished_at = conn.execute(
            text("SELECT finished_at FROM rhesis.test_runs WHERE id = :r"), {"r": big}
        ).scalar()
    assert a_finished_at is None or a_finished_at > b.finished_at
    # Round-robin with batched claims: per claim at most one test of each organization in
    # turn, plus what the workers had already claimed of A's when B arrived (prefetch).
    print(f"A's tests started while B's ran: {a_meanwhile}")
    assert a_meanwhile <= 400, a_meanwhile


@pytest.mark.slow
def test_an_organization_never_holds_more_than_its_cap(workers):
    # Given: RHESIS_TENANT_MAX_RUNNING=2 and two workers with 4 threads each (8 slots).
    workers.start(processes=2, threads=4, env={"RHESIS_TENANT_MAX_RUNNING": "2"})
    tests = [{"id": i, "sleep_s": 0.2} for i in range(12)]
    a = launch_test_run(tests, executor="tests.support.targets:sleep", organization_id="org-a")
    b = launch_test_run(tests, executor="tests.support.targets:sleep", organization_id="org-b")

    # When: both run to the end.
    for run_id in (a, b):
        assert wait_finished(run_id, timeout=120).passed == 12
        assert all(r["status"] == "passed" for r in results_by_id(run_id).values())

    # Then: the executions, read from the results, show that neither organization ever
    # ran more than 2 tests at once (and that it did reach 2), and that both ran side by
    # side. A claim lasts longer than its execution, so the cap bounds these too.
    with db.connect() as conn:
        rows = conn.execute(EXECUTIONS, {"runs": [a, b]}).all()
    by_org: dict[str, list[tuple]] = {"org-a": [], "org-b": []}
    for org, start, end in rows:
        by_org[org].append((start, end))
    assert {org: len(v) for org, v in by_org.items()} == {"org-a": 12, "org-b": 12}
    assert {org: most_at_once(v) for org, v in by_org.items()} == {"org-a": 2, "org-b": 2}
    assert most_at_once(by_org["org-a"] + by_org["org-b"]) >= 3


def test_status_shows_waiting_and_running_tests_per_organization(database_url):
    from rhesis_pipeline.monitor import status

    from .support import cli

    # Given: organization A with 5 waiting tests (1 of them claimed), B with 2, and a run
    # without an organization.
    a = launch_test_run(
        [{"id": i} for i in range(5)],
        executor="tests.support.targets:noop",
        organization_id="org-a",
    )
    launch_test_run(
        [{"id": i} for i in range(2)],
        executor="tests.support.targets:noop",
        organization_id="org-b",
    )
    launch_test_run([{"id": 0}], executor="tests.support.targets:noop")
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = "
                "(SELECT message_id FROM rhesis.test_results WHERE run_id = :r AND test_id = '0')"
            ),
            {"r": a},
        )
    # Then: status (library, --json and text) lists each organization's load, busiest first.
    assert status().snapshot.tenants == [("org-a", 4, 1), ("org-b", 2, 0), ("", 1, 0)]
    shown = cli.run("rhesis-monitor", "status", "--json", env={"DATABASE_URL": database_url})
    assert json.loads(shown.stdout)["tenants"] == [
        {"organization_id": "org-a", "waiting": 4, "running": 1},
        {"organization_id": "org-b", "waiting": 2, "running": 0},
        {"organization_id": None, "waiting": 1, "running": 0},
    ]
    text_out = cli.run("rhesis-monitor", "status", env={"DATABASE_URL": database_url}).stdout
    assert "TENANTS" in text_out and "org-a" in text_out and "(none)" in text_out
