"""The embedded default: DATABASE_URL unset, a server in RHESIS_DATA_DIR shared by processes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .support import cli
from .support.waiting import wait_until


def embedded_env(data_dir: Path) -> dict[str, str | None]:
    return {"DATABASE_URL": None, "RHESIS_DATA_DIR": str(data_dir)}


def postmaster_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
        return True
    except (ProcessLookupError, ValueError):
        return False


@pytest.mark.slow
def test_migrate_worker_and_producer_share_one_embedded_server(tmp_path):
    data_dir = tmp_path / "rhesis-data"
    env = embedded_env(data_dir)

    # Given: a fresh data directory, migrated twice by separate processes.
    first = cli.run("rhesis-pipeline", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"embedded Postgres in {data_dir / 'pgdata'}" in first.stderr
    assert cli.run("rhesis-pipeline", "migrate", env=env).returncode == 0

    # When: a worker and a producer use the same directory at the same time.
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["RHESIS_DATA_DIR"] = str(data_dir)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "rhesis_pipeline.actors", "-p", "1", "-t", "1"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "ready for action" in log.read_text(), timeout=60, what="worker boot")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import rhesis_pipeline.actors as a; a.sweep.send()",
            ],
            env=full_env,
            check=True,
            timeout=60,
        )
        # Then: the worker consumed what the other process enqueued.
        wait_until(
            lambda: "retention: deleted" in log.read_text(), timeout=30, what="purge by worker"
        )
        assert postmaster_running(data_dir)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    # And: once the last process using it has exited, the server stops.
    wait_until(lambda: not postmaster_running(data_dir), timeout=30, what="embedded server stop")


@pytest.mark.slow
def test_demo_on_the_embedded_default(tmp_path):
    # The README's first command, after installation: no DATABASE_URL, a fresh data dir.
    out = cli.run("rhesis-pipeline", "demo", env=embedded_env(tmp_path / "demo-data"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "using database embedded Postgres" in out.stderr
    assert "demo ran as designed" in out.stderr
    wait_until(
        lambda: not postmaster_running(tmp_path / "demo-data"),
        timeout=30,
        what="embedded server stop after the demo",
    )
