"""What a newcomer tripped on (issue #11): `run --wait` without a worker, Ctrl-C while
waiting, the README's example suite, `demo --suite` with a target of one's own, and the
wording of `run --help`, `sweep --dry-run`, a target's False and `runs --json` times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import pipeline
from rhesis_pipeline.runs.report import reason
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support import cli
from .support.runs import scalar

REPO = Path(__file__).resolve().parent.parent
NOOP_SUITE = {
    "name": "waits",
    "endpoint": {"type": "python", "target": "tests.support.targets:noop"},
    "tests": [{"id": "a"}, {"id": "b"}],
}


def suite_file(tmp_path: Path) -> str:
    path = tmp_path / "waits.json"
    path.write_text(json.dumps(NOOP_SUITE))
    return str(path)


def test_run_help_shows_each_exit_code_on_its_own_line():
    result = CliRunner().invoke(pipeline.main, ["run", "--help"])
    assert result.exit_code == 0
    assert "\\b" not in result.output
    lines = [line.strip() for line in result.output.splitlines()]
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert any(line.startswith(code) for line in lines), result.output
    assert "--timeout SECONDS" in result.output


@pytest.mark.slow
def test_run_wait_without_a_live_worker_says_so_once_and_how_to_start_one(database_url, tmp_path):
    # Given no worker at all, when a run is waited for, then after a few seconds without
    # progress one line on stderr says that nobody consumes its queue and what to do.
    out = cli.run(
        "rhesis-pipeline",
        "run",
        suite_file(tmp_path),
        "--wait",
        "--timeout",
        "8",
        env={"DATABASE_URL": database_url},
    )
    assert out.returncode == 1, out.stderr
    notices = [line for line in out.stderr.splitlines() if "no live worker consumes" in line]
    assert len(notices) == 1, out.stderr
    assert "queue rhesis-tests" in notices[0] and "rhesis-pipeline worker" in notices[0]
    assert "--timeout of 8s expired" in out.stderr


@pytest.mark.slow
def test_ctrl_c_while_waiting_names_the_run_says_it_goes_on_and_still_prints_json(
    database_url, tmp_path
):
    proc = subprocess.Popen(
        [cli.script("rhesis-pipeline"), "run", suite_file(tmp_path), "--wait", "--json"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background commands with SIGINT ignored,
        # and children inherit that: give the CLI the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is waiting: the first progress line
            if line.startswith("run "):
                run_id = line.split()[1].rstrip(":")
            if line.startswith("["):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert f"rhesis-pipeline: interrupted: stopped waiting; run {run_id} goes on" in stderr
    assert "Traceback" not in stderr
    data = json.loads(stdout)
    assert (data["run_id"], data["interrupted"], data["total"]) == (run_id, True, 2)
    # The run goes on: nothing was taken back.
    assert scalar("SELECT status FROM rhesis.test_runs") == "QUEUED"
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 2


@pytest.mark.slow
def test_the_readme_example_suite_runs_with_a_worker(workers, database_url):
    workers.start(processes=1, threads=4)
    out = cli.run(
        "rhesis-pipeline",
        "run",
        str(REPO / "examples" / "python-suite.yaml"),
        "--wait",
        env={"DATABASE_URL": database_url},
    )
    # One test fails on purpose.
    assert out.returncode == 1, out.stdout + out.stderr
    assert "8 tests: 7 passed, 1 failed, 0 errored" in out.stdout
    assert "capital-italy  failed" in out.stdout


@pytest.mark.slow
def test_demo_suite_imports_a_target_from_the_current_directory(database_url, tmp_path):
    (tmp_path / "mytarget.py").write_text("def check(test):\n    return test['prompt'] == 'ok'\n")
    (tmp_path / "mine.yaml").write_text(
        textwrap.dedent(
            """\
            name: mine
            endpoint: {type: python, target: "mytarget:check"}
            tests:
              - {id: good, prompt: ok}
              - {id: bad, prompt: nope, expect: failed}
            """
        )
    )
    out = subprocess.run(
        [cli.script("rhesis-pipeline"), "demo", "--suite", "mine.yaml", "--processes", "1"],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bad   failed  1         the target returned False" in out.stdout


def test_a_target_that_returned_false_is_named_as_the_reason():
    assert reason({"status": "failed", "error": None, "metrics": None}) == (
        "the target returned False"
    )
    assert reason({"status": "passed", "error": None, "metrics": None}) == "-"


def test_sweep_dry_run_says_what_it_would_do_and_that_a_batch_is_a_lower_bound(database_url):
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dramatiq.queue (message_id, queue_name, state, message, mtime) "
                "SELECT gen_random_uuid(), 'q', 'done', '{}', "
                "(CAST(:at AS timestamptz) AT TIME ZONE 'UTC') FROM generate_series(1, 1001)"
            ),
            {"at": datetime.now(timezone.utc) - timedelta(hours=1)},
        )
    out = cli.run(
        "rhesis-monitor",
        "sweep",
        "--dry-run",
        env={"DATABASE_URL": database_url, "RHESIS_QUEUE_RETENTION_HOURS": "0"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dry run, nothing changed: would rescue 0 messages")
    assert "purge at least 1000 messages" in out.stdout and "would be" not in out.stdout
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 1001


def test_runs_json_times_are_iso_8601(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    launch_test_run([{"id": "a"}], executor="tests.support.targets:noop", name="iso")
    result = CliRunner().invoke(pipeline.main, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert "T" in row["created_at"] and row["finished_at"] is None
    assert datetime.fromisoformat(row["created_at"]).tzinfo is not None
