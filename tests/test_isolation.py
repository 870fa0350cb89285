"""One bad test can never hurt another (issue #11): unstorable outputs, tests that kill
their worker, endpoints that never answer, targets that return nothing. Real Postgres,
real worker subprocesses."""

from __future__ import annotations

import socket
import threading

import pytest

from rhesis_pipeline.runs.submit import launch_test_run

from .support.runs import hook_calls, results_by_id, wait_finished
from .support.targets import POISON
from .support.workers import Supervisor

FAST = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "5"}


@pytest.mark.slow
def test_unstorable_outputs_error_alone_and_the_others_pass(workers):
    # Given: a 200-test run in which every tenth test's target returns an output the
    # database refuses (NUL in a key or a value, NaN, Infinity, a lone surrogate, 500
    # levels of nesting).
    workers.start(processes=1, threads=4)
    kinds = sorted(POISON)
    tests = [
        {"id": f"t{i}", **({"poison": kinds[(i // 10) % len(kinds)]} if i % 10 == 0 else {})}
        for i in range(200)
    ]
    run_id = launch_test_run(tests, executor="tests.support.targets:poison_output")

    # Then: the 180 others passed with their output; each of the 20 is an error naming
    # the problem and where it is; the run is PARTIAL with one callback.
    run = wait_finished(run_id, timeout=60)
    results = results_by_id(run_id)
    poisoned = {t["id"]: t["poison"] for t in tests if "poison" in t}
    assert len(poisoned) == 20
    for test_id, result in results.items():
        if test_id in poisoned:
            assert result["status"] == "error", (test_id, result)
            assert result["error"].startswith("output not storable: "), result["error"]
        else:
            assert (result["status"], result["output"]) == ("passed", "fine"), (test_id, result)
    reasons = {poisoned[t]: results[t]["error"] for t in poisoned}
    assert reasons["nul-key"] == (
        "output not storable: a NUL character (\\u0000) at output['k\\x00']"
    )
    assert reasons["nul-value"] == "output not storable: a NUL character (\\u0000) at output"
    assert reasons["nan"] == "output not storable: nan (not a JSON number) at output.score"
    assert reasons["infinity"] == "output not storable: inf (not a JSON number) at output[1]"
    assert reasons["surrogate"] == (
        "output not storable: a lone surrogate (not UTF-8) at output.text"
    )
    assert reasons["deep"].startswith("output not storable: nesting deeper than 100 levels")
    assert (run.status, run.passed, run.errored, run.collected_count) == ("PARTIAL", 180, 20, 1)
    assert len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_a_test_that_kills_its_worker_ends_as_error_and_the_others_pass(workers):
    # Given: two supervised workers (one process, 4 threads each) and a run of 50
    # ordinary tests of 0.2 s and one that calls os._exit(1), max_retries 0.
    supervisors = [Supervisor(workers, processes=1, threads=4, env=FAST) for _ in range(2)]
    try:
        tests = [{"id": f"t{i}", "sleep_s": 0.2} for i in range(25)]
        tests += [{"id": "crasher", "crash": True}]
        tests += [{"id": f"t{i}", "sleep_s": 0.2} for i in range(25, 50)]
        run_id = launch_test_run(
            tests, executor="tests.support.targets:crash_if_asked", options={"max_retries": 0}
        )

        # Then: the run ends; the crasher is an error saying why; every other test passed
        # (those running beside it too: nobody else is charged). Its worker died twice,
        # not in a loop: once on the fast path, whose start mark was lost with the worker
        # (so nobody is charged, and the members it held come back marked
        # rhesis_unstarted), then on the careful path, where suspects run one at a time
        # per process with their start marked before they execute: that death is the
        # crasher's alone (max_retries + 1 = 1) and ends the test.
        run = wait_finished(run_id, timeout=120)
    finally:
        for supervisor in supervisors:
            supervisor.stop()
    results = results_by_id(run_id)
    assert results["crasher"]["status"] == "error"
    assert results["crasher"]["error"] == (
        "the worker process died while running this test, 1 time"
    )
    assert all(results[f"t{i}"]["status"] == "passed" for i in range(50))
    assert (run.status, run.passed, run.errored, run.collected_count) == ("PARTIAL", 50, 1, 1)
    assert sum(s.exits for s in supervisors) == 2


@pytest.fixture
def silent_endpoint():
    """An HTTP endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/chat"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.slow
def test_an_endpoint_that_never_answers_ends_at_the_time_limit(workers, silent_endpoint):
    # Given: an endpoint that never answers, timeout_s 600, a time limit of 3 s.
    workers.start(processes=1, threads=2)
    run_id = launch_test_run(
        [{"id": "hangs", "prompt": "hello?"}],
        executor={"type": "http", "url": silent_endpoint, "timeout_s": 600},
        options={"time_limit_ms": 3_000, "max_retries": 0},
    )
    # Then: the test ends as error (well before the 600 s timeout), saying it got no
    # answer within its time limit.
    run = wait_finished(run_id, timeout=60)
    result = results_by_id(run_id)["hangs"]
    assert result["status"] == "error"
    assert "no answer within the test's time limit" in result["error"]
    assert run.status == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize(
    "value, status, reason",
    [
        (None, "failed", "the target returned None"),
        (False, "failed", "the target returned False"),
        ({"passed": False, "output": "x"}, "failed", "the target returned passed=false"),
        (
            {"passed": "no"},
            "error",
            "the target returned passed='no': passed must be true or false",
        ),
        (True, "passed", None),
        ({"output": "an answer"}, "passed", None),
    ],
    ids=["none", "false", "passed-false", "passed-not-bool", "true", "output-only"],
)
def test_what_a_target_returns_decides_its_verdict(workers, value, status, reason):
    workers.start(processes=1, threads=1)
    run_id = launch_test_run(
        [{"id": "t", "value": value}],
        executor="tests.support.targets:returns",
        options={"max_retries": 0},
    )
    wait_finished(run_id, timeout=30)
    result = results_by_id(run_id)["t"]
    assert (result["status"], result["error"]) == (status, reason)
