"""The fault-injection helpers (tests/support/faults.py) do what chaos tests rely on."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import text

from rhesis_pipeline.settings import libpq_url
from rhesis_pipeline.storage import db, migrate

from .support.faults import OwnedServer, cut_connections, frozen, process_state
from .support.waiting import wait_until

BACKENDS_OF = "SELECT pid FROM pg_stat_activity WHERE datname = %s ORDER BY pid"
SCHEDULED_SWEEPS = (
    "SELECT count(*) FROM dramatiq.queue "
    "WHERE message->>'actor_name' = 'sweep' AND message->'options' ? 'scheduled_at'"
)


def _connect(url: str):
    conn = psycopg2.connect(libpq_url(url), connect_timeout=2)
    conn.autocommit = True
    return conn


def _rows(conn, query: str, params=()):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def _scheduled_sweeps() -> int:
    with db.begin() as conn:
        return conn.execute(text(SCHEDULED_SWEEPS)).scalar()


def test_cut_connections_ends_every_backend_of_the_database_and_no_other(database_url, pg_server):
    # Given: an idle connection to the test database and one to another database.
    victim = _connect(database_url)
    bystander = _connect(pg_server.url("postgres"))
    try:
        assert _rows(victim, "SELECT 1") == [(1,)]
        dbname = _rows(victim, "SELECT current_database()")[0][0]
        backends = _rows(bystander, BACKENDS_OF, (dbname,))
        bystander_pid = bystander.get_backend_pid()
        assert (victim.get_backend_pid(),) in backends

        # When
        ended = cut_connections(database_url)

        # Then: every backend of that database ended, the victim's next query fails...
        assert ended == len(backends) >= 1
        assert _rows(bystander, BACKENDS_OF, (dbname,)) == []
        with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
            _rows(victim, "SELECT 1")
        # ...and the other database's connection is the same backend, still working.
        assert _rows(bystander, "SELECT pg_backend_pid()") == [(bystander_pid,)]
    finally:
        victim.close()
        bystander.close()


@pytest.mark.slow
@pytest.mark.parametrize("immediate", [False, True], ids=["fast", "immediate"])
def test_owned_server_stops_and_restarts_with_its_data_on_the_same_port(owned_server, immediate):
    url = owned_server.admin_url
    port = owned_server.port
    conn = _connect(url)
    _rows(conn, "CREATE TABLE kept (note text)")
    _rows(conn, "INSERT INTO kept VALUES ('before the stop')")
    conn.close()

    owned_server.stop(immediate=immediate)

    assert not owned_server.running
    assert owned_server.pid is None
    with pytest.raises(psycopg2.OperationalError):
        _connect(url)

    owned_server.start()

    assert owned_server.running
    assert owned_server.port == port
    conn = _connect(url)
    try:
        assert _rows(conn, "SELECT note FROM kept") == [("before the stop",)]
        assert _rows(conn, "SELECT current_setting('port')::int") == [(port,)]
    finally:
        conn.close()


def test_owned_server_close_stops_it_and_deletes_its_directory():
    server = OwnedServer()
    server.start()
    url, base_dir = server.admin_url, server.base_dir
    _connect(url).close()

    server.close()

    assert not base_dir.exists()
    with pytest.raises(psycopg2.OperationalError):
        _connect(url)


@pytest.mark.slow
def test_owned_database_url_is_migrated_and_used_by_the_db_module(owned_server, owned_database_url):
    assert owned_database_url.startswith(
        f"postgresql+psycopg2://postgres@127.0.0.1:{owned_server.port}/"
    )
    with db.begin() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert (
            conn.execute(text("SELECT current_setting('port')::int")).scalar() == owned_server.port
        )
        assert conn.execute(text("SELECT count(*) FROM public.test_records")).scalar() == 0


def test_frozen_stops_a_process_and_always_continues_it():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        # Running (R), sleeping (S) or briefly in uninterruptible sleep (D) while it starts.
        wait_until(lambda: process_state(proc.pid) in ("R", "S", "D"), timeout=5, what="started")

        with frozen(proc.pid) as pid:
            assert pid == proc.pid
            assert process_state(proc.pid) == "T"

        wait_until(lambda: process_state(proc.pid) in ("R", "S", "D"), timeout=5, what="continued")

        # Continued also when the block raises; a Popen works as well as a pid.
        with pytest.raises(RuntimeError, match="boom"), frozen(proc):
            assert process_state(proc.pid) == "T"
            raise RuntimeError("boom")
        wait_until(lambda: process_state(proc.pid) in ("R", "S", "D"), timeout=5, what="continued")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_frozen_process_group_stops_the_children_too():
    # Like a dramatiq command: a leader of its own session with a child process.
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        children = Path(f"/proc/{leader.pid}/task/{leader.pid}/children")
        child = int(wait_until(lambda: children.read_text().split(), timeout=5, what="child")[0])

        with frozen(leader, process_group=True):
            wait_until(lambda: process_state(child) == "T", timeout=5, what="child stopped")
            assert process_state(leader.pid) == "T"

        wait_until(lambda: process_state(child) in ("R", "S"), timeout=5, what="child continued")
        assert process_state(leader.pid) in ("R", "S")
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


@pytest.mark.slow
def test_scheduler_process_schedules_the_sweep_in_utc(database_url, workers):
    scheduler = workers.start_scheduler(env={"RHESIS_SWEEP_CRON": "* * * * *"})

    # periodiq schedules on start when the cron matches (it pads to the next minute
    # when started in the last 5 seconds of one).
    wait_until(lambda: "Scheduling Actor(sweep)" in scheduler.log(), timeout=10, what="a tick")
    line = next(li for li in scheduler.log().splitlines() if "Scheduling Actor(sweep)" in li)
    assert "+00:00" in line  # TZ=UTC
    # The line is logged just before the message is sent.
    wait_until(_scheduled_sweeps, timeout=5, what="the sweep message in the queue")
    assert _scheduled_sweeps() == 1

    workers.stop_all()
    assert scheduler.proc.poll() is not None
