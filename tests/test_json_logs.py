"""RHESIS_LOG_FORMAT=json: every line of workers, scheduler and CLI is one JSON object."""

from __future__ import annotations

import json

import pytest

from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.runs import wait_finished
from .support.waiting import wait_until

JSON = {"RHESIS_LOG_FORMAT": "json"}


#: Lines written before the package is imported keep their program's format: dramatiq's
#: parent process (boot and stop) and periodiq's first line.
FOREIGN = ("[dramatiq.MainProcess]", "[periodiq] [INFO] Starting Periodiq")


def json_lines(text: str) -> list[dict]:
    """Every line of *text* as JSON, except the FOREIGN ones."""
    lines = []
    for line in text.splitlines():
        if not line.strip() or any(mark in line for mark in FOREIGN):
            continue
        lines.append(json.loads(line))  # fails the test on any line that is not JSON
    return lines


@pytest.mark.slow
def test_every_worker_line_during_a_run_is_json_and_names_the_run(workers):
    # Given: a worker logging JSON, and a run whose tests pass, and one that raises.
    worker = workers.start(processes=1, threads=2, env=JSON)
    tests = [{"id": f"ok{i}"} for i in range(5)] + [{"id": "boom", "fail": True}]
    run_id = launch_test_run(
        tests,
        executor="tests.support.targets:boom_if_asked",
        options={"max_retries": 1, "min_backoff_ms": 1, "max_backoff_ms": 2},
    )
    wait_finished(run_id)
    wait_until(lambda: "finished" in worker.log(), what="the callback's line")

    lines = json_lines(worker.log())
    during = [ln for ln in lines if ln.get("message_id") or run_id in ln["message"]]
    assert during, "no line about the run"
    for line in lines:
        assert {"time", "level", "logger", "message", "pid", "worker_id"} <= set(line)
    # Every line written while one of the run's messages ran, or about the run, names it.
    for line in during:
        assert line.get("run_id") == run_id, line
    members = [ln for ln in during if ln.get("actor") == "execute_single_test"]
    assert {ln["test_id"] for ln in members if ln["level"] == "WARNING"} >= {"boom"}
    # A target that raises is an expected failure: one warning line per attempt, naming
    # the test and the reason, without a traceback.
    failed = [ln for ln in members if "failed: RuntimeError: boom in boom" in ln["message"]]
    assert [(ln["level"], ln["test_id"]) for ln in failed] == [("WARNING", "boom")] * 2
    assert [ln for ln in lines if "exc_info" in ln or ln["level"] in ("ERROR", "CRITICAL")] == []
    assert any(ln.get("actor") == "collect_results" for ln in during)


@pytest.mark.slow
def test_scheduler_and_cli_lines_are_json_and_a_bad_value_is_one_line(workers, database_url):
    scheduler = workers.start_scheduler(env=JSON)
    wait_until(lambda: "Registered periodic actors" in scheduler.log(), what="scheduler boot")
    scheduler_lines = json_lines(scheduler.log())
    assert any("periodic actors" in ln["message"] for ln in scheduler_lines)

    # The CLI's log lines are JSON; what it says to the user itself ("rhesis-monitor: …")
    # stays text.
    out = cli.run("rhesis-monitor", "sweep", env={**JSON, "DATABASE_URL": database_url})
    assert out.returncode == 0, out.stderr
    logged = json_lines(
        "\n".join(ln for ln in out.stderr.splitlines() if not ln.startswith("rhesis-monitor:"))
    )
    assert any(ln["logger"].startswith("rhesis_pipeline") for ln in logged), out.stderr

    bad = cli.run("rhesis-monitor", "status", env={"RHESIS_LOG_FORMAT": "xml"})
    assert bad.returncode == 2
    (line,) = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert "RHESIS_LOG_FORMAT='xml' is not one of text, json" in line
