"""Shared by the benchmarks: a fresh database and real worker processes."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    import psycopg2.extensions  # noqa: F401

    cpus = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {cpus} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def server_url() -> tuple[str, str]:
    """(admin URL, description): BENCH_DATABASE_URL, else 127.0.0.1:5432, else embedded."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        from rhesis_pipeline.settings import normalise_database_url

        return normalise_database_url(explicit), "BENCH_DATABASE_URL"
    try:
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
        return "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", "local server"
    except psycopg2.OperationalError:
        import tempfile

        from rhesis_pipeline import embedded

        return embedded.admin_url(Path(tempfile.mkdtemp(prefix="rhesis-bench-"))), "embedded"


@dataclass(frozen=True)
class Counters:
    commits: int  # xact_commit of the database, from pg_stat_database
    wal_bytes: int  # the server's WAL position, in bytes


#: Backends publish their statistics at most once a second: wait this long before a read.
STATS_SETTLE_S = 1.2


def database_counters(url: str) -> Counters:
    """Commits of *url*'s database and the server's WAL position, read after the other
    backends' statistics have been published (once they have been idle for a second:
    the workers poll and heartbeat, so they reach that point)."""
    from rhesis_pipeline.settings import libpq_url

    time.sleep(STATS_SETTLE_S)
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT xact_commit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
            commits, wal = cur.fetchone()
    finally:
        conn.close()
    return Counters(int(commits), int(wal))


@contextmanager
def fresh_database():
    """Create, migrate and configure a new database; drop it afterwards. Yields its URL."""
    from sqlalchemy.engine import make_url

    from rhesis_pipeline import db, migrate
    from rhesis_pipeline.settings import Settings, libpq_url

    admin, where = server_url()
    name = f"rhesis_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(libpq_url(admin))
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    db.configure(settings_=Settings.from_env({"DATABASE_URL": url}), url=url)
    try:
        migrate.upgrade()
        yield url, where
    finally:
        db.dispose()
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def workers(url: str, *, processes: int, threads: int, log_name: str = ".workers.log"):
    path = REPO / "benchmarks" / log_name
    log = open(path, "wb")  # noqa: SIM115
    env = {**os.environ, "DATABASE_URL": url, "RHESIS_LOG_LEVEL": "INFO", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "rhesis_pipeline.actors",
            "benchmarks.targets",
            "-p",
            str(processes),
            "-t",
            str(threads),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while path.read_text(errors="replace").count("ready for action") < processes:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("workers did not start:\n" + path.read_text(errors="replace"))
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
