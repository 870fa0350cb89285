"""Server-side prepared statements: the hot path's way to run a named query.

A named query of ``sql/queries.sql`` runs here as ``PREPARE rhesis_<name> AS …`` once per
database session, then ``EXECUTE`` on every call: no parsing or planning after the first
(about 1 ms saved per outcome batch). The statement gets one generic plan, and because
that plan outlives the table sizes it was made for, every ``EXECUTE`` is preceded, in the
same round trip, by ``hot_path_settings`` (queries.sql): sequential scans, bitmap scans
and sorts disabled, so the plan walks an index at any size. Measured without this: a plan
cached while ``test_results`` was nearly empty seq-scanned it on every batch, 23 ms per
batch at 10,000 rows.

Entry points, by the connection they run on:

* :func:`run_prepared`, :func:`run_prepared_batch` — a pooled connection in autocommit
  mode: one round trip, one transaction (a batch is one multi-statement string, which
  Postgres runs as one implicit transaction).
* :func:`execute_prepared` — inside a SQLAlchemy transaction the caller holds.
* :func:`execute_prepared_raw`, :func:`execute_prepared_batch_raw` — a psycopg2
  connection the caller owns (a consumer's LISTEN connection).

Every runner returns :class:`Row` objects: tuples whose values are also readable by
column name (``row.status``, ``row._mapping["status"]``), as SQLAlchemy's rows are.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.driver_errors import translate_errors
from rhesis_pipeline.storage.queries import PARAM, Q

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.pool import PoolProxiedConnection

#: Parameters of one named query: {parameter name: value}. A list or tuple value is sent
#: as a Postgres array literal.
Params = dict[str, Any]
#: One step of a batch: (query name, its parameters).
Step = tuple[str, Params]
#: What a runner returns: a list of :class:`Row`. Typed ``list[Any]`` so that a caller may
#: hold the rows as tuples (``list[tuple[Any, ...]]``) or read them by name.
Rows = list[Any]


class Row(tuple[Any, ...]):
    """One result row: a tuple whose values are also attributes named after its columns
    (``row.status``), and a ``_mapping`` like SQLAlchemy's rows. A subclass per column
    list is made once (:func:`_row_type`); a repeated column name reads its first value."""

    __slots__ = ()
    #: The query's result columns, in order.
    _fields: ClassVar[tuple[str, ...]] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        """{column: value}, first occurrence of a repeated column name winning."""
        mapping: dict[str, Any] = {}
        for name, value in zip(self._fields, self, strict=True):
            mapping.setdefault(name, value)
        return mapping

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


@lru_cache(maxsize=512)
def _row_type(fields: tuple[str, ...]) -> type[Row]:
    """The Row subclass of result columns *fields*: one property per distinct name."""
    attributes: dict[str, Any] = {"__slots__": (), "_fields": fields}
    for index, name in enumerate(fields):
        attributes.setdefault(name, property(operator.itemgetter(index)))
    return type("Row", (Row,), attributes)


def _fetch(cur: Any) -> Rows:
    """The rows of psycopg2 cursor *cur*'s last statement as Rows ([] if it has none)."""
    if cur.description is None:
        return []
    row_type = _row_type(tuple(column.name for column in cur.description))
    return [row_type(values) for values in cur.fetchall()]


@cache
def _prepared(name: str) -> tuple[Any, Any]:
    """(PREPARE statement, EXECUTE statement with the hot path's planner settings) for
    named query *name*, as psycopg2 compositions of the templates in queries.sql; the
    EXECUTE takes the query's ``:param`` parameters as ``%(param)s`` placeholders."""
    from psycopg2 import sql

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
            sql.SQL(Q["hot_path_settings"].text + "; "),
            sql.SQL(Q["execute_statement"].text).format(
                name=statement, args=sql.SQL(", ").join(sql.Placeholder(p) for p in order)
            ),
        ]
    )
    return prepare, execute


def _adapt(params: Params) -> Params:
    """*params* with every list or tuple as an array literal.

    psycopg2 sends a list as ``ARRAY[...]``, typed ``text[]``, which a prepared ``uuid[]``
    or ``jsonb[]`` parameter refuses; an array literal (``'{...}'``, of unknown type) is
    coerced to the parameter's type instead.
    """
    return {k: _pg_array(v) if isinstance(v, list | tuple) else v for k, v in params.items()}


def _pg_array(values: list[Any] | tuple[Any, ...]) -> str:
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


def execute_prepared(conn: Connection | PoolProxiedConnection, name: str, params: Params) -> Rows:
    """Run named query *name* as a prepared statement on *conn*: a SQLAlchemy Connection
    (inside its transaction) or a pooled connection. What the session prepared is
    remembered in the pooled connection's ``info``."""
    from sqlalchemy.engine import Connection as SAConnection

    fairy = conn.connection if isinstance(conn, SAConnection) else conn
    return execute_prepared_raw(
        fairy.dbapi_connection, fairy.info.setdefault("rhesis_prepared", set()), name, params
    )


def execute_prepared_raw(dbapi: Any, done: set[str], name: str, params: Params) -> Rows:
    """execute_prepared on psycopg2 connection *dbapi*; *done* remembers which statements
    this session prepared (the caller keeps it as long as the connection)."""
    prepare, execute = _prepared(name)
    with dbapi.cursor() as cur:
        if name not in done:
            cur.execute(prepare)
            done.add(name)
        # One round trip; SET LOCAL lasts to the end of the (implicit or open) transaction.
        cur.execute(execute, _adapt(params))
        return _fetch(cur)


def execute_prepared_batch_raw(dbapi: Any, done: set[str], steps: list[Step]) -> Rows:
    """run_prepared_batch on psycopg2 connection *dbapi*, which must be in autocommit
    mode; *done* remembers what it prepared. Returns the rows of the last step."""
    with dbapi.cursor() as cur:
        parts = []
        for name, params in steps:
            prepare, execute = _prepared(name)
            if name not in done:
                cur.execute(prepare)
                done.add(name)
            parts.append(cur.mogrify(execute, _adapt(params)))
        cur.execute(b"; ".join(parts))
        return _fetch(cur)


@contextmanager
def _autocommit_connection() -> Iterator[PoolProxiedConnection]:
    """A pooled connection in autocommit mode (a client-side flag: no round trip); each
    statement, or multi-statement string, is then its own transaction."""
    with translate_errors():
        fairy = engine.get().raw_connection()
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


def run_prepared(name: str, params: Params) -> Rows:
    """Run named query *name* alone, in autocommit mode: one round trip, its own
    transaction. For reads, claims and acks on the hot path."""
    with _autocommit_connection() as fairy:
        return execute_prepared(fairy, name, params)


def run_prepared_batch(steps: list[Step]) -> Rows:
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


def listen(dbapi: Any, channel: str) -> None:
    """LISTEN on *channel* on psycopg2 connection *dbapi* (autocommit, or commit after)."""
    from psycopg2 import sql

    statement = sql.SQL(Q["listen"].text).format(channel=sql.Identifier(channel))
    with dbapi.cursor() as cur:
        cur.execute(statement)
