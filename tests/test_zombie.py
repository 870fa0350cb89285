"""A worker frozen (SIGSTOP) for longer than the heartbeat timeout is a zombie: another
worker rescues its work; when it wakes, its late results are refused (claim tokens), and
every test still has exactly one result and the run one callback."""

from __future__ import annotations

from collections import Counter

import pytest

from rhesis_pipeline.monitor import list_workers
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.settings import Settings
from rhesis_pipeline.storage import engine

from .support.faults import frozen
from .support.runs import results_by_id, wait_finished
from .support.waiting import wait_until

ENV = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "3"}


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def _claims_of(pids: set[int]) -> int:
    return sum(len(w.claims) for w in list_workers().workers if w.pid in pids and w.alive)


@pytest.mark.slow
def test_a_frozen_worker_is_rescued_and_its_late_results_refused(database_url, workers, tmp_path):
    # The monitor's view in this process uses the workers' heartbeat settings.
    engine.configure(
        settings_=Settings.from_env({"DATABASE_URL": database_url, **ENV}), url=database_url
    )
    log = tmp_path / "executions.log"
    env = {**ENV, "RHESIS_TEST_EXEC_LOG": str(log)}
    # Given: two workers (one process each) and a run of 40 half-second tests.
    zombie = workers.start(processes=1, threads=2, env=env)
    workers.start(processes=1, threads=2, env=env)
    zombie_pids = _children(zombie.pid)
    run_id = launch_test_run(
        [{"id": f"t{i}", "sleep_s": 0.5} for i in range(40)],
        executor="tests.support.targets:logged",
        # The rescue counts the attempts the frozen worker lost: one retry lets them run
        # again elsewhere (with none left they would end as "the worker process died").
        options={"max_retries": 1},
    )
    wait_until(lambda: _claims_of(zombie_pids) >= 1, timeout=30, what="the zombie running tests")

    # When: it is frozen until the other worker has rescued its work, then resumed.
    with frozen(zombie, process_group=True):
        held = {c.test_id for w in list_workers().workers if w.pid in zombie_pids for c in w.claims}
        wait_until(
            lambda: not any(w.alive for w in list_workers().workers if w.pid in zombie_pids),
            timeout=20,
            what="the frozen worker seen dead",
        )
        wait_until(
            lambda: sum(len(w.claims) for w in list_workers().workers if w.pid in zombie_pids) == 0,
            timeout=20,
            what="its claims rescued",
        )

    # Then: the run ends COMPLETED with one result per test and one callback ...
    run = wait_finished(run_id, timeout=60)
    assert (run.status, run.done, run.passed, run.collected_count) == ("COMPLETED", 40, 40, 1)
    assert all(r["status"] == "passed" for r in results_by_id(run_id).values())
    # ... the tests it held ran again elsewhere, and its late results were refused.
    executions = Counter(log.read_text().split())
    assert set(executions) == {f"t{i}" for i in range(40)}
    assert {t for t, n in executions.items() if n > 1} <= held
    wait_until(
        lambda: zombie.log().count("which was superseded") >= 1,
        timeout=20,
        what="the zombie's late outcome refused",
    )
    assert zombie.proc.poll() is None  # it lives on, and is live again
    wait_until(
        lambda: all(w.alive for w in list_workers().workers if w.pid in zombie_pids),
        timeout=10,
        what="the resumed worker live again",
    )
