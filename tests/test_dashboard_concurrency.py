"""A slow request does not delay the others: the dashboard's blocking database work runs
off the event loop, so the overview's live progress polls (``/api/active-runs``) answer
at once while another request waits on the database.

The real command under uvicorn, real Postgres. The slow request is made slow honestly:
the test holds a lock that the route's own query must wait for (a page's read of
``rhesis.test_results``, an action's update of the run's row), and checks in
``pg_stat_activity`` that the dashboard's query is waiting on it before and after the polls.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import psycopg2
import pytest

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.settings import libpq_url

from .support import cli
from .support.waiting import wait_until
from .support.workers import REPO

EXECUTOR = "tests.support.targets:echo"
ENV = {"PYTHONPATH": str(REPO)}
#: Each live-progress poll must answer within this many seconds.
POLL_BUDGET_S = 0.2
#: Polls in flight at once, and polls each of them sends one after the other.
POLLERS = 3
POLLS_EACH = 4


@contextmanager
def holding(database_url: str, statement: str, **params: str) -> Iterator[Callable[[], int]]:
    """Run *statement* (it takes a lock) in a transaction kept open until the block ends;
    yields a function counting the backends that wait for this transaction's locks."""
    conn = psycopg2.connect(libpq_url(database_url))
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            cur.execute("SELECT pg_backend_pid()")
            (me,) = cur.fetchone()

        def waiting() -> int:
            with psycopg2.connect(libpq_url(database_url)) as probe, probe.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (me,),
                )
                (n,) = cur.fetchone()
            probe.close()
            return n

        yield waiting
    finally:
        conn.rollback()
        conn.close()


def poll_times(url: str) -> list[float]:
    """Seconds each of POLLERS x POLLS_EACH ``/api/active-runs`` requests took (one that
    got no answer within 1 s counts as 1 s)."""

    def poller(_: int) -> list[float]:
        seen = []
        with httpx.Client(base_url=url, timeout=1.0) as http:
            for _ in range(POLLS_EACH):
                start = time.perf_counter()
                try:
                    answer = http.get("/api/active-runs")
                    assert answer.status_code == 200 and answer.json()["runs"], answer.text
                except httpx.TimeoutException:
                    pass
                seen.append(time.perf_counter() - start)
        return seen

    with ThreadPoolExecutor(POLLERS) as pool:
        return [t for times in pool.map(poller, range(POLLERS)) for t in times]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.mark.parametrize("slow_request", ["run page", "revoke action"])
def test_live_progress_answers_while_another_request_waits_on_the_database(
    database_url, slow_request
):
    run_id = launch_test_run([{"id": i} for i in range(3)], executor=EXECUTOR, name="busy")
    with (
        cli.dashboard(database_url, env=ENV) as (_proc, url),
        httpx.Client(base_url=url, timeout=30.0) as browser,
    ):
        # Given a dashboard that served each route once (templates compiled, connections
        # open) and, for the action, the session's CSRF token.
        assert browser.get(f"/runs/{run_id}").status_code == 200
        assert browser.get("/api/active-runs").status_code == 200
        token = csrf_of(browser.get(f"/runs/{run_id}/revoke").text)
        if slow_request == "run page":
            # The run page reads test_results; /api/active-runs reads test_runs only.
            lock, send = (
                "LOCK TABLE rhesis.test_results IN ACCESS EXCLUSIVE MODE",
                lambda: browser.get(f"/runs/{run_id}"),
            )
        else:
            # Revoking updates the run's row; reading it (the polls) takes no row lock.
            lock, send = (
                "SELECT 1 FROM rhesis.test_runs WHERE id = %(run_id)s FOR UPDATE",
                lambda: browser.post(f"/runs/{run_id}/revoke", data={"csrf": token}),
            )
        with ThreadPoolExecutor(1) as bg, holding(database_url, lock, run_id=run_id) as waiting:
            # When one request's query waits on the database ...
            slow = bg.submit(send)
            wait_until(waiting, timeout=10, what=f"the {slow_request}'s query waiting")
            # ... then every live-progress poll meanwhile answers at once,
            times = poll_times(url)
            # while that query was still waiting all along.
            assert waiting() == 1, "the slow request stopped waiting before the polls ended"
        # And the slow request finishes once the database lets it.
        answer = slow.result(timeout=30)
        assert answer.status_code in (200, 303), answer.text[-500:]
    assert max(times) < POLL_BUDGET_S, [f"{t * 1000:.0f} ms" for t in times]
    if slow_request == "revoke action":
        assert get_run(run_id).cancel_requested


def test_requests_beyond_the_pool_wait_for_a_connection_then_get_a_503(database_url):
    # One connection (RHESIS_DB_POOL_SIZE=1), so one request in a thread at a time; a
    # request that finds it busy for RHESIS_DB_POOL_TIMEOUT gets a clear 503 page, while
    # the static files (no database) are served meanwhile.
    run_id = launch_test_run([{"id": 1}], executor=EXECUTOR, name="busy")
    env = {**ENV, "RHESIS_DB_POOL_SIZE": "1", "RHESIS_DB_POOL_TIMEOUT": "0.5"}
    with (
        cli.dashboard(database_url, env=env) as (_proc, url),
        httpx.Client(base_url=url, timeout=30.0) as browser,
        ThreadPoolExecutor(1) as bg,
    ):
        assert browser.get(f"/runs/{run_id}").status_code == 200
        lock = "LOCK TABLE rhesis.test_results IN ACCESS EXCLUSIVE MODE"
        with holding(database_url, lock) as waiting:
            slow = bg.submit(browser.get, f"/runs/{run_id}")
            wait_until(waiting, timeout=10, what="the run page's query waiting")
            start = time.perf_counter()
            static = httpx.get(f"{url}static/live.js", timeout=5.0)
            static_s = time.perf_counter() - start
            start = time.perf_counter()
            refused = httpx.get(f"{url}api/active-runs", timeout=5.0)
            refused_s = time.perf_counter() - start
            assert waiting() == 1
        assert slow.result(timeout=30).status_code == 200
        assert httpx.get(f"{url}api/active-runs").status_code == 200  # free again
    assert static.status_code == 200 and static_s < POLL_BUDGET_S, static_s
    assert refused.status_code == 503, refused.text[-500:]
    assert "connections are all busy; raise RHESIS_DB_POOL_SIZE" in refused.text
    assert "Traceback" not in refused.text
    assert 0.5 <= refused_s < 3.0, refused_s
