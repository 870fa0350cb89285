"""`run --wait` off a terminal: a progress line when tests finish, and at least every 30 s
when none does (a run waiting for workers must not look hung)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rhesis_pipeline.runs.report import ProgressPrinter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(done: int, total: int = 10):
    return SimpleNamespace(
        id="r1", done=done, total=total, percent=round(100.0 * done / total, 2),
        passed=done, failed=0, errored=0, lost=0,
    )  # fmt: skip


def test_off_a_terminal_a_line_comes_at_least_every_30_s_with_running_and_waiting():
    # Given: a printer off a terminal; 2 of the run's tests are running.
    clock, out = Clock(), io.StringIO()
    printer = ProgressPrinter(out, running=lambda run_id: 2, clock=clock)

    def lines_at(t: float, done: int) -> list[str]:
        clock.now = 1000.0 + t
        before = len(out.getvalue().splitlines())
        printer.update(progress(done))
        return out.getvalue().splitlines()[before:]

    # When / then: the first poll prints; nothing finishing prints nothing for 29.9 s …
    (first,) = lines_at(0, 0)
    assert first == (
        "[------------------------] 0/10   0.0%  running 2  waiting 8  "
        "passed 0  failed 0  errored 0     0.0/s  ETA -"
    )
    assert [line for t in (0.2, 2.5, 10, 29.9) for line in lines_at(t, 0)] == []
    # … then a line at 30 s, and every 30 s after, though nothing finished.
    assert len(lines_at(30, 0)) == 1
    assert lines_at(59.9, 0) == []
    (quiet,) = lines_at(60, 0)
    assert "0/10" in quiet and "running 2  waiting 8" in quiet
    # A finished test prints once 2 s have passed since the last line.
    assert lines_at(61, 4) == []
    (moved,) = lines_at(62, 4)
    assert moved.startswith("[#########---------------] 4/10  40.0%  running 2  waiting 4  ")
    assert "0.1/s" in moved
    # The final line always prints, without running and waiting.
    clock.now = 1062.5
    printer.update(progress(10), final=True)
    assert (
        out.getvalue()
        .splitlines()[-1]
        .startswith("[########################] 10/10 100.0%  passed 10")
    )


def test_running_members_counts_the_claimed_members_of_the_run(database_url):
    from sqlalchemy import text

    from rhesis_pipeline.runs.read import running_members
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    # Given: a run of three tests, none claimed, and another run.
    run_id = launch_test_run(
        [{"id": f"t{i}"} for i in range(3)], executor="tests.support.targets:echo"
    )
    other = launch_test_run([{"id": "x"}], executor="tests.support.targets:echo")
    assert running_members(run_id) == 0

    # When: a worker holds one member of each run.
    with db.begin() as conn:
        for run, test in ((run_id, "t1"), (other, "x")):
            conn.execute(
                text(
                    "UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = "
                    "(SELECT message_id FROM rhesis.test_results WHERE run_id = :r AND test_id = :t)"
                ),
                {"r": run, "t": test},
            )

    # Then: one of this run's tests is running.
    assert running_members(run_id) == 1


def test_iter_results_streams_what_get_results_returns_and_refuses_other_tenants(database_url):
    import pytest

    from rhesis_pipeline.errors import RunNotFound
    from rhesis_pipeline.runs.read import get_results, iter_results
    from rhesis_pipeline.runs.submit import launch_test_run

    run_id = launch_test_run(
        [{"id": f"t{i}"} for i in range(25)],
        executor="tests.support.targets:echo",
        organization_id="org-a",
    )
    assert list(iter_results(run_id, batch_size=7)) == get_results(run_id)
    assert [r["test_id"] for r in iter_results(run_id, organization_id="org-a")][:3] == [
        "t0",
        "t1",
        "t2",
    ]
    with pytest.raises(RunNotFound):
        list(iter_results(run_id, organization_id="org-b"))
