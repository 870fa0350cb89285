"""Re-running a run's failed and errored tests as a new run: function and CLI."""

from __future__ import annotations

import json

import pytest

from rhesis_pipeline.errors import NothingToRerun, RunNotFound
from rhesis_pipeline.monitor import inspect_run
from rhesis_pipeline.runs.read import get_results, get_run, recent_runs
from rhesis_pipeline.runs.rerun import rerun
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.runs import wait_finished
from .support.workers import REPO


def finished_run(workers, tests, **kwargs) -> str:
    run_id = launch_test_run(tests, executor="tests.support.targets:boom_if_asked", **kwargs)
    wait_finished(run_id)
    return run_id


def ids_of(run_id: str) -> list[str]:
    return [r["test_id"] for r in get_results(run_id)]


@pytest.mark.slow
def test_rerun_takes_exactly_the_failed_and_errored_tests_and_records_its_source(workers):
    workers.start(processes=1, threads=4)
    tests = [{"id": f"t{i}", "fail": i in (2, 5)} for i in range(8)]
    source = finished_run(
        workers, tests, name="nightly", organization_id="org-1", options={"max_retries": 0}
    )
    new = rerun(source, organization_id="org-1")
    run = get_run(new)
    assert run.rerun_of == source and run.name == "nightly (re-run)"
    assert (run.organization_id, run.total) == ("org-1", 2)
    assert ids_of(new) == ["t2", "t5"]
    assert inspect_run(new).as_dict()["rerun_of"] == source
    # Same options: max_retries 0 (one attempt), and it runs.
    wait_finished(new)
    assert get_run(new).errored == 2

    everything = rerun(source, all_tests=True)
    assert ids_of(everything) == [f"t{i}" for i in range(8)]


@pytest.mark.slow
def test_nothing_to_rerun_and_unknown_or_foreign_runs_are_refused(workers):
    workers.start(processes=1, threads=2)
    clean = finished_run(workers, [{"id": "a"}], organization_id="org-1")
    with pytest.raises(NothingToRerun, match="no failed or errored tests"):
        rerun(clean)
    with pytest.raises(RunNotFound):
        rerun(clean, organization_id="org-2")  # another organization's run: not found
    assert [r.id for r in recent_runs(10)] == [clean]  # nothing was created


@pytest.mark.slow
def test_rerun_command_prints_the_new_run_and_says_why_not(workers, database_url):
    workers.start(processes=1, threads=2)
    source = finished_run(workers, [{"id": "x", "fail": True}, {"id": "y"}])
    # The CLI checks that the executor imports, as workers would (from the repository).
    env = {"DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    out = cli.run("rhesis-pipeline", "rerun", source, "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["rerun_of"], data["total"]) == (source, 1)
    assert ids_of(data["run_id"]) == ["x"]

    wait_finished(data["run_id"])
    again = cli.run("rhesis-pipeline", "rerun", data["run_id"], env=env)
    assert again.returncode == 0  # x failed again: it is re-run again
    clean = finished_run(workers, [{"id": "z"}])
    none = cli.run("rhesis-pipeline", "rerun", clean, env=env)
    assert none.returncode == 1
    (line,) = [ln for ln in none.stderr.splitlines() if "error" in ln]
    assert "no failed or errored tests: nothing to re-run (--all runs every test again)" in line
    bad = cli.run("rhesis-pipeline", "rerun", "not-a-uuid", env=env)
    assert bad.returncode == 2 and "is not a run id" in bad.stderr
    assert "Traceback" not in none.stderr + bad.stderr
