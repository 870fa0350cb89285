"""One run record (rhesis_pipeline.runs.record.Run) for every reader, under its old names
too, with each reader's JSON shape kept."""

import dataclasses
import json

import rhesis_pipeline
from rhesis_pipeline import monitor
from rhesis_pipeline.monitor import find_stuck_runs
from rhesis_pipeline.runs import api as runs
from rhesis_pipeline.runs.api import launch_test_run
from rhesis_pipeline.runs.record import MONITOR_FIELDS, SUMMARY_FIELDS, Run


def test_the_old_record_types_are_names_of_the_one_record():
    assert runs.Progress is runs.RunSummary is runs.RunRecord is monitor.ActiveRun is Run
    assert rhesis_pipeline.RunSummary is rhesis_pipeline.Run is Run


def test_every_reader_returns_the_same_record_with_its_json_shape(database_url):
    # Given: a run of three tests, one of which has an outcome.
    run_id = launch_test_run(
        [{"id": f"t{i}"} for i in range(3)],
        executor="tests.support.targets:echo",
        name="nightly",
        organization_id="acme",
    )
    runs.record_outcome(run_id, "t0", status="passed")

    # Then: progress, the run, the listing and the monitor's view are one record.
    record = runs.get_run(run_id)
    progress = runs.get_progress(run_id)
    assert progress == record and progress.run_id == record.id == run_id
    assert (progress.done, progress.percent, progress.finished) == (1, 33.33, False)
    assert runs.recent_runs() == [record]
    (active,) = find_stuck_runs(0)
    assert active.stuck and active.age_s is not None and active.in_status_s is not None
    unaged = dataclasses.replace(active, age_s=None, in_status_s=None, idle_s=None, stuck=None)
    assert unaged == record
    shown = active.as_dict()
    assert tuple(shown) == MONITOR_FIELDS and shown["percent"] == 33.3  # 1 decimal, as ever
    assert shown["created_at"] == record.created_at.isoformat()
    everything = json.loads(json.dumps(record.as_dict()))
    assert everything["run_id"] == run_id and everything["cancel_requested"] is False

    # When: the last outcomes are stored and the callback's body runs.
    runs.record_outcome(run_id, "t1", status="failed")
    runs.record_outcome(run_id, "t2", status="lost")
    summary = runs.finish_run(run_id)

    # Then: the hooks' summary is the finished run, its as_dict() the summary's fields.
    assert summary is not None and summary.finished and summary.status == "PARTIAL"
    assert summary.collected_count == 1 and summary.duration_s is not None
    assert summary.finished_at is not None
    data = json.loads(json.dumps(summary.as_dict()))
    assert tuple(data) == SUMMARY_FIELDS
    assert (data["run_id"], data["passed"], data["failed"], data["lost"], data["extra"]) == (
        run_id, 1, 1, 1, {},
    )  # fmt: skip
    assert record.summary is None and runs.get_run(run_id).summary == summary.summary


def test_a_finished_run_read_back_has_its_duration(database_url):
    # Given: a run of one test, finished by the callback's body.
    run_id = launch_test_run([{"id": "t0"}], executor="tests.support.targets:echo")
    assert runs.get_run(run_id).duration_s is None
    runs.record_outcome(run_id, "t0", status="passed")
    summary = runs.finish_run(run_id)
    assert summary is not None and summary.duration_s is not None

    # Then: every reader of the finished run gives its duration and callback latency.
    for run in (runs.get_run(run_id), *runs.recent_runs()):
        assert run.duration_s == summary.duration_s == run.summary["duration_s"]
        assert run.callback_latency_ms == summary.callback_latency_ms
