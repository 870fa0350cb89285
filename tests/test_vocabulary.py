"""One vocabulary for states and one format for durations, shared by the CLI's text,
``--json`` and the dashboard (rhesis_pipeline.runs.states, rhesis_pipeline.runs.durations)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from importlib import resources

from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import monitor
from rhesis_pipeline.dashboard.app import create_app
from rhesis_pipeline.dashboard.state import DashboardConfig
from rhesis_pipeline.runs.durations import format_duration
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.states import (
    FINAL_RUN_STATUSES,
    TERMINAL_TEST_STATUSES,
    RunStatus,
    TestStatus,
)
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support.asgi import asgi_client
from .support.runs import fake_claim, fake_worker

EXECUTOR = "tests.support.targets:echo"
STOPPED_ID = "00000000-0000-0000-0000-0000000000b1"
DEAD_ID = "00000000-0000-0000-0000-0000000000d1"


def invoke(*args: str):
    return CliRunner().invoke(monitor.main, list(args))


def test_durations_have_the_precision_they_deserve():
    cases = {
        0.43: "0.43s",
        0.004: "0.004s",
        4.07: "4.07s",
        12.3: "12.3s",
        45.0: "45s",
        75: "1m15s",
        725: "12m05s",
        3 * 3600 + 12 * 60: "3h12m",
        None: "-",
    }
    assert {v: format_duration(v) for v in cases} == cases


def test_a_cleanly_stopped_worker_is_stopped_and_a_dead_one_dead(database_url):
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    with db.begin() as conn:
        fake_worker(conn, STOPPED_ID, hour_ago)
        fake_worker(conn, DEAD_ID, hour_ago)
        conn.execute(
            text("UPDATE rhesis.workers SET stopped_at = :t WHERE id = :w"),
            {"t": hour_ago, "w": STOPPED_ID},
        )
    listing = invoke("workers")
    assert listing.exit_code == 0, listing.output
    assert "WORKERS (0 live, 1 stopped, 1 dead)" in listing.output
    rows = [line.split() for line in listing.output.splitlines() if line.startswith("gone:1 ")]
    assert sorted(row[2] for row in rows) == ["dead", "stopped"]
    as_json = json.loads(invoke("workers", "--json").stdout)
    assert (as_json["live"], as_json["stopped"], as_json["dead"]) == (0, 1, 1)
    assert {w["worker_id"]: w["state"] for w in as_json["workers"]} == {
        STOPPED_ID: "stopped",
        DEAD_ID: "dead",
    }
    with asgi_client(create_app(DashboardConfig())) as http:
        page = http.get("/workers").text
    assert "0 live, 1 stopped, 1 dead" in page
    assert '<td class="worker-state stopped">stopped</td>' in page
    assert '<td class="worker-state dead">dead</td>' in page


def test_an_executing_test_is_running_and_durations_are_precise(database_url):
    run_id = launch_test_run(
        [{"id": "t0"}, {"id": "t1"}, {"id": "t2"}], executor=EXECUTOR, name="words"
    )
    record_outcome(run_id, "t1", status="error", error="boom", duration_ms=430.0)
    with db.begin() as conn:
        message_id = conn.execute(
            text("SELECT message_id FROM rhesis.test_results WHERE run_id = :r AND test_id = 't0'"),
            {"r": run_id},
        ).scalar()
        fake_worker(conn, DEAD_ID, datetime.now(timezone.utc))
        fake_claim(conn, str(message_id), DEAD_ID, datetime.now(timezone.utc), started=True)

    verbose = json.loads(invoke("inspect", run_id, "--verbose", "--json").stdout)
    assert {t["test_id"]: t["status"] for t in verbose["tests"]} == {
        "t0": TestStatus.RUNNING,
        "t1": TestStatus.ERROR,
        "t2": TestStatus.QUEUED,
    }
    text_out = invoke("inspect", run_id, "--verbose").output
    rows = {line.split()[0]: line.split() for line in text_out.splitlines() if line[:2] == "t0"}
    assert rows["t0"][1] == "running"
    assert re.search(r"^t1\s+error\s+\d+\s+.*0\.43s\s+boom", text_out, re.MULTILINE), text_out

    with asgi_client(create_app(DashboardConfig())) as http:
        page = http.get(f"/runs/{run_id}").text
    assert '<tr class="running">' in page and '<td class="status running">running</td>' in page
    assert '<td class="status queued">queued</td>' in page
    assert '<tr class="error">' in page and '<td class="num">0.43s</td>' in page
    assert '<td class="error-text">boom</td>' in page


def test_a_short_runs_duration_is_not_zero_seconds(database_url):
    run_id = launch_test_run([{"id": "t0"}], executor=EXECUTOR, name="quick")
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE rhesis.test_runs SET status = 'COMPLETED', started_at = now(), "
                "finished_at = now() + interval '430 milliseconds' WHERE id = :r"
            ),
            {"r": run_id},
        )
    assert "duration       0.43s" in invoke("inspect", run_id).output
    with asgi_client(create_app(DashboardConfig())) as http:
        assert "<td>0.43s</td>" in http.get("/runs").text
        assert "<td>Duration</td><td>0.43s</td>" in http.get(f"/runs/{run_id}").text


def test_the_error_cells_style_is_not_the_errored_rows():
    # `.error` matched the row of an errored test (tr.error): its whole row was small and
    # maroon. The error text's rule names its own class.
    css = (
        resources.files("rhesis_pipeline.dashboard")
        .joinpath("static/dashboard.css")
        .read_text("utf-8")
    )
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", css) for s in rule.split(",")]
    assert [s for s in selectors if re.fullmatch(r"(tr)?\.error", s)] == []
    assert "td.error-text" in selectors


def test_the_status_enums_are_the_databases_words(database_url):
    # The statuses the schema allows (its CHECK constraints) are exactly the enums' values:
    # a status decided in Python is one the database stores, printed as it is stored.
    with db.connect() as conn:
        checks = dict(
            conn.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname IN ('test_runs_status_check', 'test_results_status_check')"
                )
            ).all()
        )
    allowed = {name: set(re.findall(r"'(\w+)'::text", check)) for name, check in checks.items()}
    assert allowed["test_runs_status_check"] == {s.value for s in RunStatus}
    stored = {s.value for s in TestStatus} - {TestStatus.RUNNING.value}  # read from the queue
    assert allowed["test_results_status_check"] == stored
    assert set(TERMINAL_TEST_STATUSES) == set(TestStatus) - {TestStatus.QUEUED, TestStatus.RUNNING}
    assert set(FINAL_RUN_STATUSES) == set(RunStatus) - {RunStatus.QUEUED, RunStatus.IN_PROGRESS}
    # A status is its word wherever it is shown: str(), format() and JSON.
    for status in (*RunStatus, *TestStatus):
        assert str(status) == f"{status}" == json.loads(json.dumps(status)) == status.value
