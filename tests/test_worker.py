"""The Postgres broker with real worker subprocesses."""

import json
import os
import signal
import subprocess
import sys

import dramatiq
import pytest
from sqlalchemy import text

from rhesis_pipeline.storage import db, engine

from .support import actors
from .support.waiting import wait_until


def records() -> dict[str, dict]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT key, payload, pid FROM public.test_records")).all()
    return {key: {**payload, "pid": pid} for key, payload, pid in rows}


def queue_state(message_id: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT state::text FROM dramatiq.queue WHERE message_id = :id"),
            {"id": message_id},
        ).scalar()


@pytest.mark.slow
def test_smoke_a_message_sent_here_is_processed_by_a_real_worker(workers):
    worker = workers.start(processes=1, threads=2)
    message = actors.record.send("smoke", value={"answer": 42})

    got = wait_until(lambda: records().get("smoke"), what="the worker's record")
    assert got["value"] == {"answer": 42}
    assert got["pid"] != os.getpid()
    assert wait_until(lambda: queue_state(message.message_id) == "done", what="ack")
    assert worker.proc.poll() is None


@pytest.mark.slow
def test_worker_started_with_the_documented_command_consumes_and_stops_on_sigterm(
    database_url, tmp_path
):
    # Given: `dramatiq rhesis_pipeline.actors tests.support.actors -p 1 -t 2`, as in the README.
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": os.getcwd()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "dramatiq"),
                "rhesis_pipeline.actors",
                "tests.support.actors",
                "-p",
                "1",
                "-t",
                "2",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "ready for action" in log.read_text(), timeout=30, what="worker boot")
        # When: another process sends a message.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.support import actors; actors.record.send('from-another-process')",
            ],
            env=env,
            check=True,
            timeout=60,
        )
        wait_until(
            lambda: "from-another-process" in records(), what="record from the other process"
        )
        # Then: SIGTERM stops it cleanly.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Traceback" not in log.read_text()


class TagOptions(dramatiq.Middleware):
    """Adds an option in before_enqueue, as tenant context will."""

    def before_enqueue(self, broker, message, delay):
        message.options["tagged_by_middleware"] = "org-7"


@pytest.mark.slow
def test_options_added_in_before_enqueue_reach_the_worker(workers):
    broker = dramatiq.get_broker()
    tag = TagOptions()
    broker.add_middleware(tag)
    try:
        message = actors.record.send("tagged")
    finally:
        broker.middleware.remove(tag)

    # The stored message carries the option (dramatiq-pg alone would have lost it) ...
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT message FROM dramatiq.queue WHERE message_id = :id"),
            {"id": message.message_id},
        ).scalar()
    assert stored["options"]["tagged_by_middleware"] == "org-7"
    # ... and a real worker sees it on the message it processes.
    workers.start()
    got = wait_until(lambda: records().get("tagged"), what="tagged record")
    assert got["options"]["tagged_by_middleware"] == "org-7"


@pytest.mark.slow
def test_ten_queues_in_one_process_do_not_exhaust_the_pool(workers):
    # dramatiq-pg's default pool of 16 ran out with ten queues in one process.
    worker = workers.start(processes=1, threads=8)
    for queue, actor in actors.QUEUE_ACTORS.items():
        for i in range(3):
            actor.send(f"{queue}-{i}")

    wait_until(lambda: len(records()) == 30, timeout=30, what="30 records on 10 queues")
    log = worker.log()
    assert "pool exhausted" not in log and "exhausted" not in log
    # 10 test queues + smoke + the 3 product queues, each with a delay queue: 28
    # consumers; one connection each, one per thread, and a reserve of 6.
    assert "database pool: 42 connections (28 consumers, 8 threads)" in log


@pytest.mark.slow
def test_every_worker_line_written_while_a_message_runs_names_it(workers):
    worker = workers.start()
    message = actors.record.send("logged")
    wait_until(lambda: "logged" in records(), what="record")
    line = next(ln for ln in worker.log().splitlines() if "recording logged" in ln)
    assert f"[msg {message.message_id} record]" in line
    boot = next(ln for ln in worker.log().splitlines() if "worker process booted" in ln)
    assert "[msg - -]" in boot


def test_oversized_message_is_refused_and_nothing_is_stored(database_url):
    from rhesis_pipeline.errors import MessageTooLarge

    with pytest.raises(
        MessageTooLarge, match=r"actor 'record' is \d+ bytes.*RHESIS_MAX_MESSAGE_BYTES"
    ):
        actors.record.send("big", value="x" * (2 * 1024 * 1024))
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dramatiq.queue")).scalar() == 0


def test_message_for_an_unknown_actor_is_refused(database_url):
    broker = dramatiq.get_broker()
    message = dramatiq.Message(
        queue_name=actors.SMOKE_QUEUE, actor_name="no_such_actor", args=(), kwargs={}, options={}
    )
    with pytest.raises(dramatiq.errors.ActorNotFound, match="unknown actor 'no_such_actor'"):
        broker.enqueue(message)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dramatiq.queue")).scalar() == 0


def test_importing_the_actors_module_does_not_connect(tmp_path):
    # No server at that URL, and a fresh embedded directory that must stay unused.
    code = "import rhesis_pipeline.actors, sys; print(sorted(rhesis_pipeline.actors.broker.actors))"
    for env in (
        {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        {"RHESIS_DATA_DIR": str(tmp_path / "data")},
    ):
        full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**full, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "sweep" in out.stdout
    assert not (tmp_path / "data").exists()


def test_sent_message_is_json_with_our_queue(database_url):
    message = actors.record.send("json")
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT queue_name, state::text, message::text FROM dramatiq.queue")
        ).one()
    assert row[0] == actors.SMOKE_QUEUE and row[1] == "queued"
    assert json.loads(row[2])["message_id"] == message.message_id


@pytest.mark.slow
def test_a_gracefully_stopping_worker_stores_the_outcomes_it_has_not_written_yet(workers, tmp_path):
    # Given: a worker running a run of 300 quick tests, each logging its execution to a
    # file; once some have run, the run's row is locked from outside, so the outcomes
    # that fast-path members handed to the outcome writer cannot commit.
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run

    from .support.runs import wait_finished

    exec_log = tmp_path / "executions.log"
    env = {"RHESIS_TEST_EXEC_LOG": str(exec_log)}
    worker = workers.start(processes=1, threads=4, env=env)
    tests = [{"id": f"t{i}"} for i in range(300)]
    run_id = launch_test_run(tests, executor="tests.support.targets:logged")

    def executions() -> list[str]:
        return exec_log.read_text().split() if exec_log.exists() else []

    wait_until(lambda: len(executions()) >= 20, what="20 executions")
    locker = engine.get().connect()
    try:
        with locker.begin():
            locker.execute(
                text("SELECT 1 FROM rhesis.test_runs WHERE id = :id FOR UPDATE"), {"id": run_id}
            )
            wait_until(
                lambda: len(executions()) - get_run(run_id).done >= 4,
                what="outcomes waiting for their commit",
            )
            # When: the worker is asked to stop (SIGTERM) while they wait; the lock goes
            # once the worker says it is storing them before it stops (or has exited).
            worker.proc.send_signal(signal.SIGTERM)
            wait_until(
                lambda: (
                    "outcomes before stopping" in worker.log() or worker.proc.poll() is not None
                ),
                what="the stopping worker storing its outcomes",
            )
        assert worker.proc.wait(60) == 0, worker.log()
    finally:
        locker.close()

    # Then: every outcome it had been handed is stored: the next worker finishes the run,
    # and no test ran twice.
    workers.start(processes=1, threads=4, env=env)
    run = wait_finished(run_id, timeout=60)
    assert (run.status, run.passed, run.collected_count) == ("COMPLETED", 300, 1)
    ran = executions()
    assert len(ran) == len(set(ran)) == 300, sorted(t for t in set(ran) if ran.count(t) > 1)
