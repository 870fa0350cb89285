"""Shared by the benchmarks: a fresh database and real worker processes."""

from __future__ import annotations

import functools
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions

if TYPE_CHECKING:
    from rhesis_pipeline.runs.record import Run

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
    local = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", "local server"
    try:
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
        return local
    except psycopg2.OperationalError as e:
        if "too many clients" in str(e):  # it is there, only busy: connect() waits
            return local
        import tempfile

        from rhesis_pipeline.storage import embedded

        return embedded.admin_url(Path(tempfile.mkdtemp(prefix="rhesis-bench-"))), "embedded"


def libpq(url: str) -> str:
    from rhesis_pipeline.settings import libpq_url

    return libpq_url(url)


#: max_connections of a stock server is 100, and a benchmark holds ~20 of them (its workers'
#: pools): on a server shared with test suites a new connection may be refused for a while.
CONNECT_PATIENCE_S = 60.0
ENABLE_CONNECTIONS = "ALTER SYSTEM SET max_connections = 400; -- then restart the server"


def connect(url: str) -> psycopg2.extensions.connection:
    """psycopg2.connect(*url*), waiting up to CONNECT_PATIENCE_S while the server has no
    free connection ("too many clients already")."""
    deadline = time.monotonic() + CONNECT_PATIENCE_S
    while True:
        try:
            return psycopg2.connect(libpq(url))
        except psycopg2.OperationalError as e:
            if "too many clients" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _one_line(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook of the benchmarks: a database that cannot be reached, or that has no
    free connection, is one line, not a traceback (anything else keeps its traceback)."""
    from rhesis_pipeline.errors import DatabaseUnavailable

    if not isinstance(error, (psycopg2.OperationalError, DatabaseUnavailable)):
        sys.__excepthook__(kind, error, tb)
        return
    said = " ".join(str(error).split()) or kind.__name__
    hint = (
        f"; more connections with: {ENABLE_CONNECTIONS}, or run when the server is quieter"
        if "too many clients" in said
        else ""
    )
    print(f"error: the database: {said}{hint}", file=sys.stderr)


sys.excepthook = _one_line


@contextmanager
def connection(url: str) -> Iterator[psycopg2.extensions.connection]:
    """A plain autocommit connection to *url*'s database (as the benchmark's own user):
    each statement is one transaction, which is how the benchmarks count their own."""
    conn = connect(url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def query(
    url: str, sql: str, params: tuple[Any, ...] | dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    with connection(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def unavailable(figure: str, why: str, enable: str) -> None:
    """The one line a benchmark prints for a figure this server cannot give (the rest
    of the benchmark still runs)."""
    print(f"unavailable: {figure}: {why}; enable with: {enable}", flush=True)


#: The one line that enables each optional server feature a figure needs.
ENABLE_PG_STAT_STATEMENTS = (
    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; -- then restart the server"
)
ENABLE_AUTOVACUUM = (
    "ALTER SYSTEM SET autovacuum = on; ALTER SYSTEM SET autovacuum_naptime = '10s';"
    " SELECT pg_reload_conf();"
)
ENABLE_WAL_KEEP = "ALTER SYSTEM SET wal_keep_size = '4GB'; SELECT pg_reload_conf();"
ENABLE_SUPERUSER = "BENCH_DATABASE_URL=postgresql://postgres@HOST:5432/postgres (a superuser)"
ENABLE_CONTRIB = "apt-get install postgresql-contrib (the server's contrib extensions)"


def why_not(error: psycopg2.Error) -> tuple[str, str | None]:
    """(the server's one-line reason, the line that enables it when that is not the
    feature's own: a superuser, the contrib package) of a failed extension statement."""
    why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "permission denied" in why or "must be superuser" in why:
        return why, ENABLE_SUPERUSER
    if "control file" in why or "is not available" in why:
        return why, ENABLE_CONTRIB
    return why, None


@functools.cache
def pg_stat_statements_missing(url: str) -> tuple[str, str] | None:
    """None when *url*'s database gives pg_stat_statements (installed here if needed),
    else (why not, the line that enables it): the server must preload it
    (shared_preload_libraries, a restart) and the user may have to create it. Asked once
    per database (its two transactions must not count in database_counters' reads)."""
    try:
        query(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        query(url, "SELECT 1 FROM pg_stat_statements LIMIT 1")
        return None
    except psycopg2.Error as e:
        why, enable = why_not(e)
        return why, enable or ENABLE_PG_STAT_STATEMENTS


def has_pg_stat_statements(url: str, figure: str | None = None) -> bool:
    """Whether *url*'s database gives pg_stat_statements; if not and *figure* is given,
    print that figure's "unavailable:" line."""
    missing = pg_stat_statements_missing(url)
    if missing and figure:
        unavailable(figure, *missing)
    return missing is None


def server_settings(url: str, names: tuple[str, ...]) -> dict[str, str]:
    """The server's current value of each setting in *names*."""
    return dict(
        query(url, "SELECT n, current_setting(n) FROM unnest(%s::text[]) AS n", (list(names),))
    )


#: The settings the published figures depend on (benchmarks/README.md).
FIGURE_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "max_connections",
    "autovacuum",
    "autovacuum_naptime",
    "shared_preload_libraries",
    "wal_keep_size",
)


def server(url: str, names: tuple[str, ...] = FIGURE_SETTINGS) -> str:
    """ "server: PostgreSQL 15.x; fsync on, ...": the line a benchmark prints at the top
    when its figures depend on the server's settings."""
    ((version,),) = query(url, "SELECT current_setting('server_version')")
    values = server_settings(url, names)
    settings = ", ".join(f"{k} = {v or repr('')}" for k, v in values.items())
    return f"server: PostgreSQL {version.split()[0]}; {settings}"


def reset_pg_stat_statements(url: str) -> None:
    """Forget the statements of *url*'s database only (other databases of a shared
    server keep theirs)."""
    query(
        url,
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
        " WHERE datname = current_database()), 0)",
    )


@dataclass(frozen=True)
class Counters:
    commits: int  # xact_commit of the database, from pg_stat_database
    wal_bytes: int  # the server's WAL position, in bytes (every database of the server)
    statement_wal: int | None  # WAL written by this database's statements (pg_stat_statements)
    at: float  # time.time() of the read
    checkpoints: int  # the server's checkpoints so far (each makes the next page writes
    # log full pages: on a server shared with test suites, DROP DATABASE requests many)
    evictions: int | None  # pg_stat_statements entries deallocated so far (any database's:
    # one of ours evicted between two reads makes statement_wal's delta too small)


#: Backends publish their statistics at most once a second: wait this long before a read
#: taken while every backend is busy (each one flushes at its next commit).
STATS_SETTLE_S = 1.2
#: A backend that goes idle with statistics not yet published (it committed within a
#: second of its previous flush) publishes them 10 s later (PGSTAT_IDLE_INTERVAL of
#: Postgres 15): the pooled connections the workers stop using at the end of a run do.
#: A read after a run waits this long, or it misses up to a second of the run's commits.
STATS_IDLE_SETTLE_S = 11.0

#: Transactions a read of the counters adds to the database (its own SELECT, published
#: when its connection closes).
COUNTER_READ_COMMITS = 1


def database_counters(url: str, *, settle_s: float = STATS_SETTLE_S) -> Counters:
    """Commits of *url*'s database and the server's WAL position, read after *settle_s*
    seconds (see STATS_SETTLE_S / STATS_IDLE_SETTLE_S)."""
    time.sleep(settle_s)
    statements, evictions = (
        (
            "(SELECT sum(wal_bytes) FROM pg_stat_statements WHERE dbid = d.datid)",
            "(SELECT dealloc FROM pg_stat_statements_info)",
        )
        if has_pg_stat_statements(url)
        else ("NULL", "NULL")
    )
    ((commits, wal, statement_wal, checkpoints, dealloc),) = query(
        url,
        "SELECT d.xact_commit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), "
        f"{statements}, (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), "
        f"{evictions} FROM pg_stat_database d WHERE d.datname = current_database()",
    )
    return Counters(
        int(commits),
        int(wal),
        None if statement_wal is None else int(statement_wal),
        time.time(),
        int(checkpoints),
        None if dealloc is None else int(dealloc),
    )


def idle_commit_rate(url: str, seconds: float = 30.0) -> float:
    """Commits per second of *url*'s database while nothing is submitted (the workers'
    polls and heartbeats, the sweeper): subtracted from a run's commits for the time
    around it that the counters also cover. The idle workers commit in bursts (8/s on
    average with 2 processes, 2026-12-04): over the ~15 s a run's reads add, the
    subtraction is right within some 30 commits (0.003/test for 10,000 tests)."""
    before = database_counters(url, settle_s=STATS_IDLE_SETTLE_S)
    time.sleep(seconds)
    after = database_counters(url, settle_s=STATS_SETTLE_S)
    return max(
        0.0, (after.commits - before.commits - COUNTER_READ_COMMITS) / (after.at - before.at)
    )


def wait_finished(url: str, run_id: str, *, timeout_s: float, every_s: float = 0.02) -> int:
    """Poll the run's row until its callback has set finished_at; return the number of
    polls (each one a transaction of the database, for the commit count)."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    with connection(url) as conn, conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT finished_at IS NOT NULL FROM rhesis.test_runs WHERE id = %s", (run_id,)
            )
            polls += 1
            if cur.fetchone()[0]:
                return polls
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"run {run_id} not finished after {timeout_s:.0f}s; see benchmarks/.workers.log"
                )
            time.sleep(every_s)


def submit_noop(n: int, name: str, *, executor: str = "benchmarks.targets:noop") -> str:
    """Launch a run of *n* tests (streamed), no retries; return its id."""
    from rhesis_pipeline.runs.submit import launch_test_run

    return launch_test_run(
        ({"id": i} for i in range(n)), executor=executor, name=name, options={"max_retries": 0}
    )


@dataclass(frozen=True)
class TimedRun:
    run: Run  # the finished run
    started: float  # time.time() when the submission began
    submit_s: float  # the submission's time
    e2e_s: float  # submission start -> the callback's finished_at
    polls: int  # the transactions wait_finished spent


def timed_run(url: str, n: int, *, name: str | None = None, timeout_s: float = 900) -> TimedRun:
    """Submit a run of *n* no-op tests and wait for its callback: its timings."""
    from rhesis_pipeline.runs.read import get_run

    started = time.time()
    t0 = time.perf_counter()
    run_id = submit_noop(n, name or f"bench-{n}")
    submit_s = time.perf_counter() - t0
    polls = wait_finished(url, run_id, timeout_s=timeout_s)
    run = get_run(run_id)
    if run.status != "COMPLETED" or run.passed != n or run.finished_at is None:
        raise SystemExit(f"run of {n} no-op tests did not pass: {run}")
    return TimedRun(run, started, submit_s, run.finished_at.timestamp() - started, polls)


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is *pid* (the worker processes of a `dramatiq` command)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def worker_pids(proc: subprocess.Popen[bytes], processes: int) -> list[int]:
    """The *processes* worker processes of a `dramatiq` command started by :func:`workers`
    (its children that run Python; dramatiq also forks none other by default)."""
    pids = [p for p in child_pids(proc.pid) if "dramatiq" in cmdline(p) or "python" in cmdline(p)]
    if len(pids) < processes:
        raise RuntimeError(f"expected {processes} worker processes under {proc.pid}, found {pids}")
    return pids[:processes]


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mib(pid: int) -> float:
    """Resident set size of *pid* (VmRSS of /proc/PID/status), in MiB."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


#: The tables whose size a busy system must keep stable.
TABLES = ("dramatiq.queue", "rhesis.claims", "rhesis.test_results", "rhesis.test_runs")


@dataclass(frozen=True)
class TableStats:
    name: str
    bytes: int  # pg_total_relation_size: heap, indexes, TOAST
    live: int
    dead: int
    autovacuums: int

    @property
    def dead_ratio(self) -> float:
        return self.dead / self.live if self.live else (0.0 if not self.dead else float("inf"))


def table_stats(url: str, tables: tuple[str, ...] = TABLES) -> dict[str, TableStats]:
    """Size, live and dead tuples, autovacuum count of each table (statistics as the
    server last published them: up to a second or so behind)."""
    rows = query(
        url,
        "SELECT schemaname || '.' || relname, pg_total_relation_size(relid), n_live_tup,"
        " n_dead_tup, autovacuum_count FROM pg_stat_user_tables"
        " WHERE schemaname || '.' || relname = ANY(%s)",
        (list(tables),),
    )
    return {r[0]: TableStats(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


@contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """Create, migrate and configure a new database; drop it afterwards. Yields its URL."""
    from sqlalchemy.engine import make_url

    from rhesis_pipeline.settings import Settings
    from rhesis_pipeline.storage import engine, migrate

    admin, where = server_url()
    name = f"rhesis_bench_{uuid.uuid4().hex[:8]}"
    conn = connect(admin)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    engine.configure(settings_=Settings.from_env({"DATABASE_URL": url}), url=url)
    try:
        migrate.upgrade()
        yield url, where
    finally:
        engine.dispose()
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def service(
    url: str,
    argv: list[str],
    *,
    log_name: str,
    ready: str | None = None,
    count: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python <argv>` (["-m", module, ...] or a script and its arguments) against
    *url*'s database, its output in benchmarks/<log_name>; wait until *ready* appears
    *count* times in it; SIGTERM it (then SIGKILL its process group) afterwards. Yields
    the Popen."""
    path = REPO / "benchmarks" / log_name
    log = open(path, "wb")  # noqa: SIM115
    full_env = {
        **os.environ,
        "DATABASE_URL": url,
        "RHESIS_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        "TZ": "UTC",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while ready and path.read_text(errors="replace").count(ready) < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start:\n" + path.read_text(errors="replace"))
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@contextmanager
def workers(
    url: str,
    *,
    processes: int,
    threads: int,
    log_name: str = ".workers.log",
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """*processes* dramatiq worker processes of *threads* threads each (the actors and
    benchmarks.targets), started and ready. Yields the Popen of the `dramatiq` command."""
    argv = ["-m", "dramatiq", "rhesis_pipeline.actors", "benchmarks.targets"]
    argv += ["-p", str(processes), "-t", str(threads)]
    with service(
        url, argv, log_name=log_name, ready="ready for action", count=processes, env=env
    ) as proc:
        yield proc


@contextmanager
def scheduler(
    url: str, *, env: dict[str, str] | None = None, log_name: str = ".scheduler.log"
) -> Iterator[subprocess.Popen[bytes]]:
    """The periodiq scheduler (sends the sweep every RHESIS_SWEEP_CRON, in UTC), started
    and ready. periodiq has no ``__main__``: its console script runs with this interpreter."""
    script = Path(sys.executable).parent / "periodiq"
    argv = (
        [str(script)]
        if script.exists()
        else ["-c", "from periodiq import entrypoint; entrypoint()"]
    )
    argv.append("rhesis_pipeline.actors")
    with service(
        url, argv, log_name=log_name, ready="Registered periodic actors:", env=env
    ) as proc:
        yield proc
