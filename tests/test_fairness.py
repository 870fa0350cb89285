"""Fair scheduling across tenants (issue #12): members of different organizations are
claimed round-robin by organization, and RHESIS_TENANT_MAX_RUNNING caps what one
organization holds. Real Postgres, real worker subprocesses."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text

from rhesis_pipeline import db, runs
from rhesis_pipeline.runs import launch_test_run

from .support.runs import results_by_id, wait_finished
from .support.waiting import wait_until

pytestmark = pytest.mark.slow

CLAIMED_BY_ORG = text(
    "SELECT COALESCE(q.message->'options'->'tenant'->>'organization_id', '') AS org, count(*) "
    "FROM rhesis.claims c JOIN dramatiq.queue q ON q.message_id = c.message_id "
    "WHERE q.state = 'consumed' AND q.queue_name = 'rhesis-tests' GROUP BY 1"
)


def test_a_small_run_is_not_held_behind_another_organizations_backlog(workers):
    # Given: workers busy with organization A's 50,000 tests.
    workers.start(processes=2, threads=4)
    big = launch_test_run(
        [{"id": i} for i in range(50_000)],
        executor="tests.support.targets:noop",
        organization_id="org-a",
        name="a-big",
    )
    wait_until(lambda: runs.get_progress(big).done > 0, timeout=30, what="A under way")
    started = time.monotonic()
    wait_until(lambda: time.monotonic() >= started + 2, timeout=5, what="2 s later")

    # When: organization B launches 20 tests.
    launched = time.monotonic()
    small = launch_test_run(
        [{"id": i} for i in range(20)],
        executor="tests.support.targets:noop",
        organization_id="org-b",
        name="b-small",
    )

    # Then: B's run is finished within 5 s of its launch, while A's is still running.
    wait_finished(small, timeout=5)
    assert time.monotonic() - launched < 5
    assert runs.get_progress(small).passed == 20
    progress = runs.get_progress(big)
    assert not progress.finished and progress.done < 50_000


def test_an_organization_never_holds_more_than_its_cap(workers):
    # Given: RHESIS_TENANT_MAX_RUNNING=2 and two workers with 4 threads each (8 slots).
    workers.start(processes=2, threads=4, env={"RHESIS_TENANT_MAX_RUNNING": "2"})
    tests = [{"id": i, "sleep_s": 0.2} for i in range(24)]
    a = launch_test_run(tests, executor="tests.support.targets:sleep", organization_id="org-a")
    b = launch_test_run(tests, executor="tests.support.targets:sleep", organization_id="org-b")

    # When: both run; what each organization has claimed is sampled throughout.
    most = {"org-a": 0, "org-b": 0}
    together = 0
    deadline = time.monotonic() + 60
    while not (runs.get_progress(a).finished and runs.get_progress(b).finished):
        assert time.monotonic() < deadline, "runs did not finish within 60 s"
        with db.connect() as conn:
            claimed = dict(conn.execute(CLAIMED_BY_ORG).all())
        for org in most:
            most[org] = max(most[org], claimed.get(org, 0))
        together += claimed.get("org-a", 0) > 0 and claimed.get("org-b", 0) > 0
        time.sleep(0.02)  # sampling period, not a wait for an outcome

    # Then: neither ever held more than 2, both ran side by side, and all passed.
    assert most == {"org-a": 2, "org-b": 2}
    assert together > 0
    for run_id in (a, b):
        assert wait_finished(run_id).passed == 24
        assert all(r["status"] == "passed" for r in results_by_id(run_id).values())


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
