"""One run record (rhesis_pipeline.runs.record.Run) for every reader, with each reader's
JSON shape kept."""

import dataclasses
import json

from rhesis_pipeline.monitor import find_stuck_runs
from rhesis_pipeline.runs.complete import finish_run
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.read import get_run, recent_runs
from rhesis_pipeline.runs.record import MONITOR_FIELDS, SUMMARY_FIELDS
from rhesis_pipeline.runs.states import RunStatus
from rhesis_pipeline.runs.submit import launch_test_run


def test_every_reader_returns_the_same_record_with_its_json_shape(database_url):
    # Given: a run of three tests, one of which has an outcome.
    run_id = launch_test_run(
        [{"id": f"t{i}"} for i in range(3)],
        executor="tests.support.targets:echo",
        name="nightly",
        organization_id="acme",
    )
    record_outcome(run_id, "t0", status="passed")

    # Then: the run (its progress), the listing and the monitor's view are one record.
    record = get_run(run_id)
    assert record.id == run_id and isinstance(record.status, RunStatus)
    assert (record.done, record.percent, record.finished) == (1, 33.33, False)
    assert recent_runs() == [record]
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
    record_outcome(run_id, "t1", status="failed")
    record_outcome(run_id, "t2", status="lost")
    summary = finish_run(run_id)

    # Then: the hooks' summary is the finished run, its as_dict() the summary's fields.
    assert summary is not None and summary.finished and summary.status is RunStatus.PARTIAL
    assert summary.collected_count == 1 and summary.duration_s is not None
    assert summary.finished_at is not None
    shown = summary.as_dict()
    assert type(shown["status"]) is str and shown["status"] == "PARTIAL"  # as stored
    data = json.loads(json.dumps(shown))
    assert tuple(data) == SUMMARY_FIELDS
    assert (data["run_id"], data["passed"], data["failed"], data["lost"], data["extra"]) == (
        run_id, 1, 1, 1, {},
    )  # fmt: skip
    assert record.summary is None and get_run(run_id).summary == summary.summary


def test_a_finished_run_read_back_has_its_duration(database_url):
    # Given: a run of one test, finished by the callback's body.
    run_id = launch_test_run([{"id": "t0"}], executor="tests.support.targets:echo")
    assert get_run(run_id).duration_s is None
    record_outcome(run_id, "t0", status="passed")
    summary = finish_run(run_id)
    assert summary is not None and summary.duration_s is not None

    # Then: every reader of the finished run gives its duration and callback latency.
    for run in (get_run(run_id), *recent_runs()):
        assert run.duration_s == summary.duration_s == run.summary["duration_s"]
        assert run.callback_latency_ms == summary.callback_latency_ms
