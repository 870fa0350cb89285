"""rhesis-pipeline / rhesis-monitor: exit codes and one-line errors, in process and as
real subprocesses."""

import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import monitor, pipeline
from rhesis_pipeline.storage import engine

from .support import cli
from .support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("url", "code", "fragment"),
    [
        ("postgresql://nobody:s3cret@127.0.0.1:1/none", 3, "cannot use database"),
        ("mysql://root@127.0.0.1/db", 2, "scheme 'mysql'"),
        ("not a url", 2, "is not a URL"),
    ],
)
def test_wrong_database_url_gives_one_line_and_an_exit_code(url, code, fragment):
    out = cli.run("rhesis-pipeline", "migrate", env={"DATABASE_URL": url})
    assert out.returncode == code, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and fragment in errors[0]
    assert "Traceback" not in out.stderr
    assert "s3cret" not in out.stderr


def test_missing_database_names_it(pg_server):
    url = pg_server.url("rhesis_no_such_db")
    out = cli.run("rhesis-pipeline", "check", env={"DATABASE_URL": url})
    assert out.returncode == 3
    assert 'database "rhesis_no_such_db" does not exist' in out.stderr
    assert "Traceback" not in out.stderr


def test_unmigrated_database_says_to_migrate(empty_database_url):
    out = cli.run("rhesis-pipeline", "check", env={"DATABASE_URL": empty_database_url})
    assert out.returncode == 4
    assert "is not migrated: run `rhesis-pipeline migrate`" in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_twice_as_a_subprocess_then_check(empty_database_url):
    env = {"DATABASE_URL": empty_database_url}
    first = cli.run("rhesis-pipeline", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "migrated database from revision none to" in first.stdout
    assert "using database postgresql+psycopg2://" in first.stderr
    second = cli.run("rhesis-pipeline", "migrate", env=env)
    assert second.returncode == 0 and "up to date" in second.stdout
    assert cli.run("rhesis-pipeline", "check", env=env).returncode == 0


def test_migrate_in_process_with_clirunner(empty_database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    result = CliRunner().invoke(pipeline.main, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "migrated database" in result.output


def test_bad_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("RHESIS_WORKER_THREADS", "lots")
    engine.reset()
    try:
        result = CliRunner().invoke(pipeline.main, ["check"])
    finally:
        engine.reset()
    assert result.exit_code == 2
    assert "RHESIS_WORKER_THREADS='lots' is not a whole number" in result.output


def test_monitor_entry_point_exists():
    out = cli.run("rhesis-monitor", "--help")
    assert out.returncode == 0 and "Exit codes" in out.stdout
    assert CliRunner().invoke(monitor.main, ["--version"]).exit_code == 0


@pytest.mark.slow
def test_bin_worker_refuses_an_unmigrated_database(empty_database_url):
    out = subprocess.run(
        [str(REPO / "bin" / "worker")],
        env={**os.environ, "DATABASE_URL": empty_database_url, "PATH": cli_path()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 4
    assert "not migrated" in out.stderr and "Traceback" not in out.stderr


def cli_path() -> str:
    return os.path.dirname(cli.script("rhesis-pipeline")) + os.pathsep + os.environ.get("PATH", "")


@pytest.mark.slow
def test_bin_worker_execs_dramatiq_with_the_settings(database_url, tmp_path):
    log = tmp_path / "w.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PATH": cli_path(),
        "RHESIS_WORKER_PROCESSES": "1",
        "RHESIS_WORKER_THREADS": "3",
        "RHESIS_QUEUES": "rhesis-maintenance",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "bin" / "worker")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "ready for action" in log.read_text(), timeout=30, what="worker boot")
        text = log.read_text()
        expected = "--processes 1 --threads 3 --queues rhesis-maintenance"
        assert f"exec dramatiq rhesis_pipeline.actors {expected}" in text
        # One queue and its delay queue: 2 consumers, 3 threads.
        assert "database pool: 11 connections (2 consumers, 3 threads)" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_bin_scheduler_runs_periodiq_in_utc_and_a_worker_runs_the_purge(
    database_url, workers, tmp_path
):
    # Every minute, so periodiq enqueues the purge as soon as it starts.
    worker = workers.start(env={"RHESIS_SWEEP_CRON": "* * * * *"})
    log = tmp_path / "scheduler.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PATH": cli_path(),
        "RHESIS_SWEEP_CRON": "* * * * *",
        "TZ": "Asia/Tokyo",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "bin" / "scheduler")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "retention: deleted" in worker.log(), timeout=60, what="scheduled purge")
        text = log.read_text()
        assert "exec periodiq rhesis_pipeline.actors" in text
        assert "Scheduling" in text and "+00:00" in text  # scheduled_at in UTC, not Tokyo time
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
