"""The Kubernetes probes: ``rhesis-pipeline probe worker`` (liveness from the worker
processes' own liveness files, no database) and the dashboard's ``GET /readyz``
(answers and reaches the database within 1 s).

Given real worker processes, the probe passes while they heartbeat — also while the
database is gone (a failover must not get every worker restarted) — and fails with one
line once a process's heartbeat thread is silent for longer than the grace: the thread
stopped, or the process frozen (SIGSTOP)."""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rhesis_pipeline.storage import engine
from rhesis_pipeline.worker.liveness_file import (
    DB_WAITING,
    HOLDING,
    LivenessFile,
    probe,
)

from .support.actors import stop_heartbeat
from .support.asgi import asgi_client
from .support.cli import dashboard, run
from .support.faults import frozen
from .support.waiting import wait_until
from .support.workers import WorkerPool

REPO = Path(__file__).resolve().parent.parent
#: Heartbeat every 0.2 s: the lock grace (3 intervals) is 0.6 s, so the tests are short.
INTERVAL_S = 0.2
GRACE_S = 3 * INTERVAL_S
#: The probe answers in ~0.5 s on an idle 2-core machine (most of it importing the
#: package); beside busy worker processes and a server on the same 2 cores, up to ~1.2 s.
LOADED_MAX_S = 2.0


def probe_env(run_dir: Path) -> dict[str, str]:
    return {"RHESIS_RUN_DIR": str(run_dir), "RHESIS_HEARTBEAT_INTERVAL_S": str(INTERVAL_S)}


def run_probe(run_dir: Path):
    """``rhesis-pipeline probe worker`` as the kubelet runs it: (result, seconds)."""
    started = time.monotonic()
    done = run("rhesis-pipeline", "probe", "worker", env={"RHESIS_RUN_DIR": str(run_dir)})
    return done, time.monotonic() - started


def states(run_dir: Path) -> list[str]:
    return [json.loads(p.read_text())["state"] for p in sorted(run_dir.glob("worker-*.json"))]


# -- the judgement, on files written here (fast) -----------------------------------------


def test_a_fresh_file_passes_a_silent_one_fails_and_a_dead_processes_is_ignored(tmp_path):
    live = LivenessFile("a" * 36, grace_s=5.0, directory=tmp_path)
    live.write(HOLDING)
    assert probe(tmp_path) == (True, "ok: 1 worker process(es) heartbeating")

    ok, line = probe(tmp_path, now=time.time() + 6)
    assert not ok
    assert f"worker process {os.getpid()} (worker aaaaaaaa)" in line
    assert "longer than the grace of 5 s" in line and "\n" not in line

    # Waiting for the database is live as long as the thread goes round.
    live.write(DB_WAITING)
    assert probe(tmp_path) == (
        True,
        "ok: 1 worker process(es) heartbeating, 1 waiting for the database or its lock",
    )

    # A file left by a process that no longer exists is removed, not judged.
    gone = tmp_path / "worker-999999999.json"
    gone.write_text(
        json.dumps(
            {"pid": 999999999, "worker_id": "b", "state": HOLDING, "beat_at": 0, "grace_s": 1}
        )
    )
    assert probe(tmp_path)[0]
    assert not gone.exists()

    live.remove()
    ok, line = probe(tmp_path)
    assert not ok and "no worker process has written a liveness file" in line


def test_a_half_written_file_is_skipped(tmp_path):
    (tmp_path / "worker-1.json").write_text('{"pid": 1, "worker_')
    ok, line = probe(tmp_path)
    assert not ok and "no worker process" in line


def test_the_command_fails_with_one_line_and_exit_1_and_answers_within_a_second(tmp_path):
    done, took = run_probe(tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "probe worker failed" in done.stderr
    assert took < 1.0, took
    LivenessFile("c" * 36, grace_s=5.0, directory=tmp_path).write(HOLDING)
    done, took = run_probe(tmp_path)
    assert (done.returncode, done.stdout) == (0, "ok: 1 worker process(es) heartbeating\n")
    assert took < 1.0, took


def entrypoint_probe(run_dir: Path):
    """``rhesis-entrypoint probe worker`` (the image's fast path): (result, seconds)."""
    venv_bin = str(Path(sys.executable).parent)
    started = time.monotonic()
    done = subprocess.run(
        [str(REPO / "bin" / "entrypoint"), "probe", "worker"],
        env={
            **os.environ,
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
            "RHESIS_RUN_DIR": str(run_dir),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, time.monotonic() - started


def test_the_entry_points_fast_probe_says_what_the_cli_says_without_importing_the_package(
    tmp_path,
):
    for write in (None, HOLDING, DB_WAITING):
        if write:
            LivenessFile("d" * 36, grace_s=5.0, directory=tmp_path).write(write)
        fast, fast_s = entrypoint_probe(tmp_path)
        slow, _ = run_probe(tmp_path)
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            slow.returncode,
            slow.stdout,
            slow.stderr,
        )
        assert fast_s < 0.5, fast_s
    assert fast.returncode == 0
    # A silent file fails both the same way.
    stale = json.loads((tmp_path / f"worker-{os.getpid()}.json").read_text())
    stale["beat_at"] -= 60
    (tmp_path / f"worker-{os.getpid()}.json").write_text(json.dumps(stale))
    fast, _ = entrypoint_probe(tmp_path)
    assert fast.returncode == 1 and "silent for 6" in fast.stderr
    seconds = re.compile(r"silent for [0-9.]+ s")
    assert seconds.sub("", fast.stderr) == seconds.sub("", run_probe(tmp_path)[0].stderr)


# -- real worker processes (slow) --------------------------------------------------------


@pytest.mark.slow
def test_the_probe_passes_for_a_live_worker_and_fails_once_its_process_is_frozen(workers, tmp_path):
    run_dir = tmp_path / "run"
    worker = workers.start(processes=2, threads=1, env=probe_env(run_dir))
    wait_until(lambda: states(run_dir) == [HOLDING, HOLDING], what="two liveness files")
    done, took = run_probe(run_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: 2 worker process(es) heartbeating\n"
    assert took < LOADED_MAX_S, took

    # When the whole dramatiq command is frozen (a VM pause, a stop-the-world stall)
    # for longer than the grace, the probe fails with one line naming a process.
    with frozen(worker, process_group=True):
        failed = wait_until(
            lambda: (d := run_probe(run_dir)[0]).returncode == 1 and d,
            timeout=10,
            what="the probe failing",
        )
        assert failed.stdout == ""
        assert failed.stderr.count("\n") == 1
        assert "heartbeat thread has been silent" in failed.stderr
    # Thawed, it heartbeats again and the probe passes.
    wait_until(lambda: run_probe(run_dir)[0].returncode == 0, timeout=10, what="live again")
    assert worker.stop() == 0
    assert states(run_dir) == []  # a clean stop removes the files


@pytest.mark.slow
def test_the_probe_fails_when_the_heartbeat_thread_is_gone_though_the_process_lives(
    workers, tmp_path
):
    run_dir = tmp_path / "run"
    worker = workers.start(processes=1, threads=1, env=probe_env(run_dir))
    wait_until(lambda: states(run_dir) == [HOLDING], what="a liveness file")
    assert run_probe(run_dir)[0].returncode == 0

    stop_heartbeat.send()
    wait_until(
        lambda: "heartbeat thread of worker" in worker.log(), timeout=10, what="thread stopped"
    )
    stopped_at = time.monotonic()
    failed = wait_until(
        lambda: (d := run_probe(run_dir)[0]).returncode == 1 and d, timeout=10, what="failing"
    )
    # Not before the grace: the thread was silent for longer than it.
    assert time.monotonic() - stopped_at >= GRACE_S - INTERVAL_S
    assert "heartbeat thread has been silent" in failed.stderr
    assert failed.stderr.count("\n") == 1
    assert worker.proc.poll() is None  # the process itself lives: only the probe sees it


@pytest.mark.slow
def test_the_probe_passes_while_the_database_is_gone(owned_server, owned_database_url, tmp_path):
    run_dir = tmp_path / "run"
    pool = WorkerPool(database_url=owned_database_url, log_dir=tmp_path)
    try:
        worker = pool.start(processes=1, threads=1, env=probe_env(run_dir))
        wait_until(lambda: states(run_dir) == [HOLDING], what="a liveness file")

        # When the server stops (a failover), the heartbeat thread waits for it ...
        owned_server.stop()
        wait_until(lambda: states(run_dir) == [DB_WAITING], timeout=15, what="db-waiting")
        # ... and the probe passes all along, for ten graces, in well under a second.
        down_at, times = time.monotonic(), []
        while time.monotonic() - down_at < 10 * GRACE_S:
            done, took = run_probe(run_dir)
            assert done.returncode == 0, done.stderr
            assert "1 waiting for the database" in done.stdout
            times.append(took)
        assert statistics.median(times) < 1.0 and max(times) < LOADED_MAX_S, times
        assert worker.proc.poll() is None

        # Then: the server is back, the worker holds its lock again.
        owned_server.start()
        wait_until(lambda: states(run_dir) == [HOLDING], timeout=30, what="holding again")
        assert run_probe(run_dir)[0].stdout == "ok: 1 worker process(es) heartbeating\n"
    finally:
        pool.stop_all()


# -- /readyz -----------------------------------------------------------------------------


def test_readyz_is_200_with_the_database_and_needs_no_token(database_url):
    from rhesis_pipeline.dashboard.app import create_app
    from rhesis_pipeline.dashboard.state import DashboardConfig

    app = create_app(DashboardConfig(token="s3cret", organization_header="X-Org"))
    with asgi_client(app) as client:
        response = client.get("/readyz")
        assert (response.status_code, response.text) == (200, "ready\n")
        assert client.get("/runs").status_code == 303  # the rest still needs the token


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: an unroutable database."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_readyz_is_503_in_about_a_second_when_the_database_does_not_answer_and_the_loop_serves_on(
    database_url, silent_server
):
    import anyio

    from rhesis_pipeline.dashboard.app import create_app
    from rhesis_pipeline.dashboard.state import DashboardConfig

    app = create_app(DashboardConfig())
    timings: dict[str, float] = {}
    responses: dict[str, httpx.Response] = {}

    async def timed(client: httpx.AsyncClient, path: str, delay: float = 0.0) -> None:
        # Timed from when it was due: a blocked loop would delay the sleep's end too.
        due = time.monotonic() + delay
        await anyio.sleep(delay)
        responses[path] = await client.get(path)
        timings[path] = time.monotonic() - due

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://d.test")
        async with client, anyio.create_task_group() as tasks:
            tasks.start_soon(timed, client, "/readyz")
            # While /readyz waits for the database, the event loop serves a static file.
            tasks.start_soon(timed, client, "/static/dashboard.css", 0.3)

    engine.configure(url=f"postgresql+psycopg2://postgres@127.0.0.1:{silent_server}/nothing")
    try:
        anyio.run(main)
    finally:
        engine.configure(url=database_url)
    assert responses["/readyz"].status_code == 503
    assert responses["/readyz"].text == (
        "not ready: the database did not answer SELECT 1 within 1 s\n"
    )
    assert 0.9 < timings["/readyz"] < 1.5, timings
    assert responses["/static/dashboard.css"].status_code == 200
    assert timings["/static/dashboard.css"] < 0.5, timings


@pytest.mark.slow
def test_readyz_of_a_served_dashboard_follows_the_database(owned_server, owned_database_url):
    with dashboard(owned_database_url, env={"RHESIS_DASHBOARD_TOKEN": "s3cret"}) as (_, url):
        assert httpx.get(url + "readyz", timeout=5).status_code == 200
        owned_server.stop()
        response = httpx.get(url + "readyz", timeout=5)
        assert response.status_code == 503
        assert response.text.startswith("not ready: the database cannot be reached: ")
        assert response.text.count("\n") == 1
        owned_server.start()
        wait_until(
            lambda: httpx.get(url + "readyz", timeout=5).status_code == 200, what="ready again"
        )
