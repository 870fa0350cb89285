"""The one boundary between rhesis-pipeline and the database driver.

Everything else talks to Postgres through this module: it resolves the database
(``DATABASE_URL`` or the embedded server), owns the process's single SQLAlchemy engine
and its connection pool, lends raw psycopg2 connections from that same pool to the
dramatiq-pg broker (:class:`BrokerPool`), and translates driver errors into
:mod:`rhesis_pipeline.errors` exceptions with one-line messages.

One pool per process, sized once: a worker sizes it from its threads and queues before
it boots (see :mod:`rhesis_pipeline.worker.middleware.pool_sizing`), every other process uses
``RHESIS_DB_POOL_SIZE`` or 5. The pool waits up to ``RHESIS_DB_POOL_TIMEOUT`` seconds for
a free connection instead of failing at once as psycopg2's own pool does.

Nothing here connects at import time; the engine is created on first use, and dropped
without closing its connections in a child after ``fork()`` (they belong to the parent).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.errors import DatabaseUnavailable, PermissionDenied
from rhesis_pipeline.settings import Settings, redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

#: Schema of the pipeline's own tables and of its Alembic version table.
SCHEMA = "rhesis"
#: Alembic's version table, kept in our schema so it never collides with the host
#: application's own ``public.alembic_version``.
VERSION_TABLE = "alembic_version"

#: Connections per process when nothing sized the pool (CLI, web application).
DEFAULT_POOL_SIZE = 5

_lock = threading.RLock()
_state: dict[str, Any] = {"settings": None, "url": None, "engine": None, "pool_size": None}


def settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    with _lock:
        if _state["settings"] is None:
            _state["settings"] = Settings.from_env()
        return _state["settings"]


def database_url() -> str:
    """The normalised SQLAlchemy URL of the database, starting the embedded server if needed."""
    with _lock:
        if _state["url"] is None:
            s = settings()
            if s.database_url is not None:
                _state["url"] = s.database_url
            else:
                from rhesis_pipeline.storage import embedded

                _state["url"] = embedded.database_url(s.data_dir)
        return _state["url"]


def release_embedded() -> None:
    """Let go of the embedded server if this process started or joined it (a worker
    process's last act; a no-op with DATABASE_URL)."""
    from rhesis_pipeline.storage import embedded

    embedded.release()


def describe_database() -> str:
    """One line saying which database this process uses, password hidden."""
    s = settings()
    url = redact_url(database_url())
    if s.embedded:
        from rhesis_pipeline.storage.embedded import pgdata_dir

        return f"embedded Postgres in {pgdata_dir(s.data_dir)} ({url})"
    return f"{url} (from DATABASE_URL)"


def announce_database(stream=None, program: str = "rhesis-pipeline") -> None:
    """Say on stderr which database this process uses."""
    print(f"{program}: using database {describe_database()}", file=stream or sys.stderr)


def configure(*, settings_: Settings | None = None, url: str | None = None) -> None:
    """Replace the settings and/or database URL (tests, CLI); drops the current engine."""
    with _lock:
        dispose()
        if settings_ is not None:
            _state["settings"] = settings_
        if url is not None:
            _state["url"] = url
        elif settings_ is not None:
            _state["url"] = None


def reset() -> None:
    """Forget settings, URL, pool size and engine; the next use reads the environment again."""
    with _lock:
        dispose()
        _state.update(settings=None, url=None, pool_size=None)


def set_pool_size(size: int) -> None:
    """Size the process's pool; takes effect now if no connection was made yet, else on
    the next engine (the current one is disposed)."""
    with _lock:
        if _state["pool_size"] == size:
            return
        _state["pool_size"] = size
        if _state["engine"] is not None:
            _state["engine"].dispose()
            _state["engine"] = None


def pool_size() -> int:
    explicit = settings().db_pool_size
    if explicit:
        return explicit
    return _state["pool_size"] or DEFAULT_POOL_SIZE


def engine() -> Engine:
    """The process's engine, created on first use."""
    with _lock:
        if _state["engine"] is None:
            from sqlalchemy import create_engine

            size = pool_size()
            _state["engine"] = create_engine(
                database_url(),
                pool_size=size,
                max_overflow=0,
                pool_timeout=settings().db_pool_timeout,
                # No pre-ping: it costs a round trip per checkout on the hot path. A
                # connection found dead raises a disconnect error, SQLAlchemy then
                # invalidates the pool, and the message is retried.
                connect_args={
                    "application_name": _application_name(),
                    "connect_timeout": 10,
                    "keepalives": 1,
                    "keepalives_idle": 5,
                    "keepalives_interval": 2,
                    "keepalives_count": 2,
                },
            )
            logger.debug("database pool of %d connections for %s", size, redact_url(database_url()))
        return _state["engine"]


def dispose() -> None:
    """Close the pool's idle connections and forget the engine."""
    with _lock:
        if _state["engine"] is not None:
            _state["engine"].dispose()
            _state["engine"] = None


def _after_fork_in_child() -> None:
    # The parent's connections must not be used (or closed) by the child.
    if _state["engine"] is not None:
        _state["engine"].dispose(close=False)
        _state["engine"] = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _application_name() -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"rhesis-pipeline:{prog}"[:63]


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A DatabaseUnavailable for driver error *exc*, naming the database and the fix."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    try:
        where = redact_url(database_url())
    except Exception:
        where = "the database"
    return DatabaseUnavailable(
        f"cannot use database {where}: {first}. "
        "Check DATABASE_URL and that the server is running and accepts connections"
    )


def is_connection_error(exc: BaseException) -> bool:
    """True if *exc* says the database cannot be reached or the connection broke (as
    opposed to a statement the database refused)."""
    import psycopg2
    from sqlalchemy import exc as sa_exc

    return isinstance(
        exc,
        DatabaseUnavailable
        | psycopg2.OperationalError
        | psycopg2.InterfaceError
        | sa_exc.OperationalError
        | sa_exc.InterfaceError,
    )


def as_unavailable(exc: BaseException) -> DatabaseUnavailable:
    """*exc* (a connection error) as a DatabaseUnavailable."""
    return exc if isinstance(exc, DatabaseUnavailable) else unavailable(exc)


#: SQLSTATE of "permission denied" and of a row-level security policy's refusal.
INSUFFICIENT_PRIVILEGE = "42501"


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn connection-level driver errors into DatabaseUnavailable, and refusals of this
    session's role (a missing grant, a row-level security policy) into PermissionDenied."""
    import psycopg2
    from sqlalchemy import exc as sa_exc

    try:
        yield
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailable(
            f"no free database connection after {settings().db_pool_timeout:g}s: "
            f"the pool of {pool_size()} is exhausted; raise RHESIS_DB_POOL_SIZE"
        ) from exc
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    ) as exc:
        raise unavailable(exc) from exc
    except (sa_exc.DBAPIError, psycopg2.Error) as exc:
        if getattr(getattr(exc, "orig", exc), "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise PermissionDenied(
            f"the database refused this session's role: {detail[0] if detail else 'denied'}"
        ) from exc


@contextmanager
def begin() -> Iterator[Connection]:
    """A connection inside a transaction that commits on success, rolls back on error."""
    with translate_errors(), engine().begin() as conn:
        yield conn


@contextmanager
def actor_transaction() -> Iterator[Connection]:
    """A transaction with the current tenant set as ``app.current_organization`` and
    ``app.current_user`` (empty strings when there is none), local to the transaction."""
    from rhesis_pipeline.storage.queries import Q
    from rhesis_pipeline.storage.tenant_context import current_tenant

    tenant = current_tenant()
    with begin() as conn:
        conn.execute(
            Q["set_tenant"],
            {
                "organization_id": (tenant and tenant.organization_id) or "",
                "user_id": (tenant and tenant.user_id) or "",
            },
        )
        yield conn


@contextmanager
def connect() -> Iterator[Connection]:
    """A connection without an implicit commit (read-only work, explicit transactions)."""
    with translate_errors(), engine().connect() as conn:
        yield conn


# -- prepared statements for the hot path ---------------------------------------------

_prepared_sql: dict[str, tuple[Any, Any]] = {}


def _prepared(name: str) -> tuple[Any, Any]:
    """(PREPARE statement, EXECUTE statement with the hot path's planner settings) for
    named query *name*, as psycopg2 compositions of the templates in queries.sql."""
    if name not in _prepared_sql:
        from psycopg2 import sql

        from rhesis_pipeline.storage.queries import PARAM, Q

        text = Q[name].text
        order: list[str] = []
        for param in PARAM.findall(text):
            if param not in order:
                order.append(param)
        numbered = PARAM.sub(lambda m: f"${order.index(m.group(1)) + 1}", text)
        statement = sql.Identifier(f"rhesis_{name}")
        prepare = sql.SQL(Q["prepare_statement"].text).format(
            name=statement, statement=sql.SQL(numbered)
        )
        execute = sql.Composed(
            [
                # Planner settings of the hot path; see execute_prepared.
                sql.SQL(Q["hot_path_settings"].text + "; "),
                sql.SQL(Q["execute_statement"].text).format(
                    name=statement, args=sql.SQL(", ").join(sql.Placeholder(p) for p in order)
                ),
            ]
        )
        _prepared_sql[name] = (prepare, execute)
    return _prepared_sql[name]


def pyformat(name: str) -> str:
    """Named query *name* with psycopg2's ``%(param)s`` placeholders, for raw connections."""
    from rhesis_pipeline.storage.queries import pyformat as _pyformat

    return _pyformat(name)


def listen(dbapi: Any, channel: str) -> None:
    """LISTEN on *channel* on psycopg2 connection *dbapi* (autocommit, or commit after)."""
    from psycopg2 import sql

    from rhesis_pipeline.storage.queries import Q

    statement = sql.SQL(Q["listen"].text).format(channel=sql.Identifier(channel))
    with dbapi.cursor() as cur:
        cur.execute(statement)


def execute_prepared(conn: Any, name: str, params: dict[str, Any]) -> list[tuple]:
    """Run named query *name* as a server-side prepared statement on *conn*.

    *conn* is a SQLAlchemy Connection (inside its transaction) or a pooled DBAPI
    connection. The statement is prepared once per database session and planned once
    (a generic plan), which saves parsing and planning (about 1 ms for the outcome
    batch) on every later call. Because that one plan outlives the table sizes it was
    made for, it is made with sequential scans, bitmap scans and sorts disabled
    (``hot_path_settings`` in queries.sql): every hot-path query finds its rows by key or walks an
    index in order, so the index plan is right at any size. Measured without this: a
    plan cached while ``test_results`` was nearly empty seq-scanned it on every batch,
    23 ms per batch at 10,000 rows. Returns the rows as tuples.
    """
    from sqlalchemy.engine import Connection as SAConnection

    fairy = conn.connection if isinstance(conn, SAConnection) else conn
    return execute_prepared_raw(
        fairy.dbapi_connection, fairy.info.setdefault("rhesis_prepared", set()), name, params
    )


def execute_prepared_raw(dbapi, done: set[str], name: str, params: dict[str, Any]) -> list[tuple]:
    """execute_prepared on a psycopg2 connection; *done* remembers what it prepared."""
    prepare, execute = _prepared(name)
    # psycopg2 sends a list as ARRAY[...], typed text[], which a prepared uuid[] or jsonb[]
    # parameter refuses; an array literal ('{...}', of unknown type) is coerced instead.
    adapted = {k: _pg_array(v) if isinstance(v, list | tuple) else v for k, v in params.items()}
    with dbapi.cursor() as cur:
        if name not in done:
            cur.execute(prepare)
            done.add(name)
        # One round trip; SET LOCAL lasts to the end of the (implicit or open) transaction.
        cur.execute(execute, adapted)
        return cur.fetchall() if cur.description else []


def _pg_array(values: list | tuple) -> str:
    """A Postgres array literal of *values* (None is NULL; everything else quoted)."""
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, datetime):
            text = value.isoformat()
        else:
            text = str(value)
        parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


@contextmanager
def _autocommit_connection() -> Iterator[Any]:
    """A pooled connection in autocommit mode (a client-side flag: no round trip); each
    statement, or multi-statement string, is then its own transaction."""
    with translate_errors():
        fairy = engine().raw_connection()
    try:
        dbapi: Any = fairy.dbapi_connection
        dbapi.autocommit = True
        try:
            with translate_errors():
                yield fairy
        finally:
            if not dbapi.closed:
                dbapi.autocommit = False
    finally:
        fairy.close()


def run_prepared(name: str, params: dict[str, Any]) -> list[tuple]:
    """Run named query *name* alone, in autocommit mode: one round trip, its own
    transaction. For reads, claims and acks on the hot path."""
    with _autocommit_connection() as fairy:
        return execute_prepared(fairy, name, params)


def run_prepared_batch(steps: list[tuple[str, dict[str, Any]]]) -> list[tuple]:
    """Run named queries *steps* (name, params) as prepared statements in **one round
    trip and one transaction**; returns the rows of the last one.

    The statements go to the server as one multi-statement string on an autocommit
    connection: Postgres runs such a string as one implicit transaction, committed after
    its last statement, or rolled back whole if one fails. So a batch of outcomes costs
    one round trip instead of five (BEGIN, three statements, COMMIT).
    """
    with _autocommit_connection() as fairy:
        done = fairy.info.setdefault("rhesis_prepared", set())
        return execute_prepared_batch_raw(fairy.dbapi_connection, done, steps)


def execute_prepared_batch_raw(
    dbapi: Any, done: set[str], steps: list[tuple[str, dict[str, Any]]]
) -> list[tuple]:
    """run_prepared_batch on psycopg2 connection *dbapi*, which must be in autocommit
    mode; *done* remembers what it prepared."""
    with dbapi.cursor() as cur:
        parts = []
        for name, params in steps:
            prepare, execute = _prepared(name)
            if name not in done:
                cur.execute(prepare)
                done.add(name)
            adapted = {
                k: _pg_array(v) if isinstance(v, list | tuple) else v for k, v in params.items()
            }
            parts.append(cur.mogrify(execute, adapted))
        cur.execute(b"; ".join(parts))
        return cur.fetchall() if cur.description else []


def copy_rows(conn: Connection, table: str, columns: tuple[str, ...], rows) -> int:
    """COPY *rows* (tuples of str/None, in *columns* order; any iterable, read once and
    streamed: never listed) into *table* inside *conn*'s transaction; returns how many.
    Several times faster than INSERT … SELECT for bulk submissions. An exception raised
    while *rows* is read (bad input) aborts the COPY and propagates."""
    from psycopg2 import sql

    from rhesis_pipeline.storage.queries import Q

    count = 0

    def lines() -> Iterator[str]:
        nonlocal count
        for row in rows:
            count += 1
            yield "\t".join("\\N" if v is None else _copy_escape(v) for v in row) + "\n"

    schema, _, name = table.rpartition(".")
    statement = sql.SQL(Q["copy_rows"].text).format(
        table=sql.Identifier(schema, name) if schema else sql.Identifier(name),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )
    dbapi: Any = conn.connection.dbapi_connection
    reader = _LineReader(lines())
    try:
        with translate_errors(), dbapi.cursor() as cur:
            cur.copy_expert(statement, reader, size=COPY_CHUNK)
    except Exception:
        if reader.error is not None:
            # psycopg2 reports "error in .read() call": raise what the rows raised.
            raise reader.error from None
        raise
    return count


#: Characters handed to COPY per read.
COPY_CHUNK = 256 * 1024


class _LineReader:
    """A read-only text file over an iterator of lines, for psycopg2's copy_expert: each
    ``read(size)`` takes lines until it has about *size* characters (lines are never
    split), so memory holds one chunk, whatever the number of rows."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        #: What reading the lines raised (the COPY is then aborted).
        self.error: Exception | None = None

    def read(self, size: int = -1) -> str:
        chunk: list[str] = []
        n = 0
        try:
            for line in self._lines:
                chunk.append(line)
                n += len(line)
                if 0 <= size <= n:
                    break
        except Exception as exc:
            self.error = exc
            raise
        return "".join(chunk)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_escape(value: str) -> str:
    # Most values (ids, JSON without backslashes) need nothing: test before translating.
    if "\\" in value or "\n" in value or "\t" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


class BrokerPool:
    """The psycopg2 pool interface dramatiq-pg expects, served from the engine's pool.

    ``getconn()``/``putconn(conn)``/``minconn``, as dramatiq-pg's broker expects. The
    consumers and the rate limiter's ``wait`` borrow connections that they switch to
    autocommit and LISTEN on (and tune, for the consumer); such a connection is closed
    when returned, so the next borrower never inherits that state.
    """

    #: dramatiq-pg's pool_sanitizer walks ``minconn`` idle connections after a
    #: disconnect; here a broken connection raises and SQLAlchemy invalidates the pool.
    minconn = 0

    def __init__(self) -> None:
        self._borrowed: dict[int, Any] = {}
        self._lock = threading.Lock()

    def getconn(self):
        with translate_errors():
            fairy = engine().raw_connection()
        raw = fairy.dbapi_connection
        with self._lock:
            self._borrowed[id(raw)] = fairy
        return raw

    def putconn(self, conn, key=None, close=False) -> None:
        with self._lock:
            fairy = self._borrowed.pop(id(conn), None)
        if fairy is None:  # not ours (or returned twice): just close it
            if not conn.closed:
                conn.close()
            return
        if conn.closed or close or conn.autocommit:
            # A consumer's or waiter's connection (autocommit, LISTEN, session planner
            # settings) is closed rather than handed to the next borrower.
            fairy.invalidate()
            return
        fairy.close()

    def closeall(self) -> None:
        dispose()


#: The process's one BrokerPool (dramatiq-pg's interface over the engine's pool).
BROKER_POOL = BrokerPool()
