"""``bin/entrypoint ROLE`` (the image's ``rhesis-entrypoint``), run directly as the image
runs it: each role against this test's database. Every role execs its program, so the
process the test started *is* the program: SIGTERM reaches it (dramatiq drains and
exits, uvicorn stops) — the same signal tini forwards in a pod."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "bin" / "entrypoint"
#: What a worker process logs once its consumers run (dramatiq).
READY_LINE = "Worker process is ready for action."


def entry_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a pod: DATABASE_URL, this venv's scripts first on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
        "DATABASE_URL": database_url,
        **extra,
    }


def entry(database_url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env=entry_env(database_url, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Started:
    """A role started in the background, its output in a file; always stopped."""

    def __init__(self, database_url: str, log: Path, *args: str, **extra: str) -> None:
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(ENTRYPOINT), *args],
                env=entry_env(database_url, **extra),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log()}"
            return text in self.log()

        wait_until(seen, timeout=timeout, what=repr(text))

    def program(self) -> str:
        """The command line of the process the test started: after the execs, the role's
        program itself, not a shell that would keep SIGTERM from it."""
        return Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def terminate(self, within_s: float) -> tuple[int, float]:
        """SIGTERM to the process (not its group: only what tini would send); its exit code
        and how long it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(within_s)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.mark.slow
def test_migrate_applies_the_schema_then_finds_it_up_to_date(empty_database_url):
    first = entry(empty_database_url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "migrated database from revision none to " in first.stdout
    again = entry(empty_database_url, "migrate")
    assert again.returncode == 0 and "database is up to date" in again.stdout


@pytest.mark.slow
def test_health_answers_unhealthy_without_workers_and_says_why(database_url):
    done = entry(database_url, "health")
    assert done.returncode == 1, done.stderr
    assert "no live worker" in done.stdout.lower(), done.stdout
    assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_dashboard_serves_on_port_and_all_addresses_and_is_ready(database_url, tmp_path):
    port = _free_port()
    role = Started(database_url, tmp_path / "dashboard.log", "dashboard", PORT=str(port))
    try:
        role.wait_for(f"serving dashboard on http://0.0.0.0:{port}/")
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert (response.status_code, response.text) == (200, "ready\n")
        assert "rhesis-monitor dashboard --host 0.0.0.0 --port" in role.program()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        code, _took = role.terminate(within_s=10)
        assert code in (0, -signal.SIGTERM), role.log()
        assert "Traceback" not in role.log()
    finally:
        role.kill()


@pytest.mark.slow
def test_the_worker_starts_passes_its_probe_and_stops_on_sigterm_within_its_grace(
    database_url, tmp_path
):
    run_dir = tmp_path / "run"
    env = {
        "RHESIS_WORKER_PROCESSES": "2",
        "RHESIS_WORKER_THREADS": "1",
        "RHESIS_RUN_DIR": str(run_dir),
        "RHESIS_HEARTBEAT_INTERVAL_S": "0.5",
    }
    role = Started(database_url, tmp_path / "worker.log", "worker", **env)
    try:
        wait_until(lambda: role.log().count(READY_LINE) == 2, timeout=60, what="2 processes")
        wait_until(
            lambda: len(list(run_dir.glob("worker-*.json"))) == 2, what="their liveness files"
        )
        probe = entry(database_url, "probe", "worker", **env)
        assert (probe.returncode, probe.stdout) == (
            0,
            "ok: 2 worker process(es) heartbeating\n",
        ), probe.stderr
        # The pid the test started is dramatiq's (sh exec'd rhesis-pipeline, which
        # exec'd dramatiq): SIGTERM to it alone stops the workers cleanly.
        assert "dramatiq rhesis_pipeline.actors --processes 2 --threads 1" in role.program()
        code, took = role.terminate(within_s=30)
        assert code == 0, role.log()[-3000:]
        assert took < 30
        assert list(run_dir.glob("worker-*.json")) == []  # deregistered, files removed
        after = entry(database_url, "probe", "worker", **env)
        assert after.returncode == 1 and after.stderr.count("\n") == 1
    finally:
        role.kill()


@pytest.mark.slow
def test_the_scheduler_starts_and_stops_on_sigterm(database_url, tmp_path):
    role = Started(database_url, tmp_path / "scheduler.log", "scheduler")
    try:
        role.wait_for("Registered periodic actors:")
        assert "periodiq rhesis_pipeline.actors" in role.program()
        # periodiq only enqueues (its actors are idempotent): SIGTERM's default ends it.
        code, _took = role.terminate(within_s=10)
        assert code == -signal.SIGTERM, role.log()[-3000:]
    finally:
        role.kill()
