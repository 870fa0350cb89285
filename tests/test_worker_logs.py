"""What a worker logs during ordinary runs: failed metrics, raising targets and targets it
cannot import are expected outcomes of a test, never ERROR, CRITICAL or a traceback."""

from __future__ import annotations

import re

import pytest

from rhesis_pipeline.runs.submit import launch_test_run

from .support.runs import results_by_id, wait_finished
from .support.waiting import wait_until

#: A line of a worker's log at ERROR or above (ours, dramatiq's, its parent process's).
LOUD = re.compile(r"\b(ERROR|CRITICAL)\b")


def loud_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if LOUD.search(line) or "Traceback" in line]


@pytest.mark.slow
def test_a_run_with_failures_and_errors_logs_nothing_at_error_or_above(workers):
    # Given: a worker, and a run whose tests pass, fail a metric, and raise on every
    # attempt; the raising one ends last (it waits for its retries), in error.
    worker = workers.start(processes=1, threads=2)
    run_id = launch_test_run(
        [
            {"id": "ok"},
            {"id": "metric", "metrics": [{"type": "contains", "value": "never"}]},
            {"id": "boom", "fail": True},
        ],
        executor="tests.support.targets:boom_if_asked",
        options={"max_retries": 2, "min_backoff_ms": 200, "max_backoff_ms": 300},
    )

    # When: the run finishes.
    run = wait_finished(run_id)
    wait_until(lambda: "finished PARTIAL" in worker.log(), what="the callback's line")

    # Then: its outcomes are the expected ones, and nothing was logged at ERROR or above.
    assert (run.status, run.passed, run.failed, run.errored) == ("PARTIAL", 1, 1, 1)
    results = results_by_id(run_id)
    assert (results["boom"]["attempts"], results["boom"]["error"]) == (
        3,
        "RuntimeError: boom in boom",
    )
    log = worker.log()
    assert loud_lines(log) == []
    # Each failed attempt is one warning line naming where the target raised.
    attempts = [line for line in log.splitlines() if "failed: RuntimeError: boom in boom" in line]
    assert len(attempts) == 3, log
    assert all("WARNING" in line and "targets.py" in line for line in attempts), attempts


@pytest.mark.slow
def test_a_target_the_worker_cannot_import_errors_at_once(workers, tmp_path, monkeypatch):
    # Given: a target importable where the run is submitted (so it passes validation) but
    # not by the worker, and retries allowed.
    (tmp_path / "only_here_target.py").write_text("def run(test):\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    worker = workers.start(processes=1, threads=2)
    run_id = launch_test_run(
        [{"id": "t1"}],
        executor="only_here_target:run",
        options={"max_retries": 3, "min_backoff_ms": 1, "max_backoff_ms": 2},
    )

    # When: the run finishes.
    run = wait_finished(run_id)

    # Then: the test errored after one attempt, with the one-line reason; no traceback.
    assert (run.status, run.errored) == ("FAILED", 1)
    result = results_by_id(run_id)["t1"]
    reason = (
        "executor.target 'only_here_target:run': cannot import module 'only_here_target' "
        "(ModuleNotFoundError: No module named 'only_here_target'); "
        "it must be importable by the workers"
    )
    assert (result["status"], result["attempts"], result["error"]) == ("error", 1, reason)
    assert loud_lines(worker.log()) == []
