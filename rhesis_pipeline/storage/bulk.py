"""Bulk loading with COPY: how a run with 10,000 tests is stored in one transaction.

``COPY … FROM STDIN`` is several times faster than ``INSERT … SELECT`` for a submission's
member rows. The rows are streamed, never listed: :class:`_LineReader` hands psycopg2
about :data:`COPY_CHUNK` characters at a time, so memory holds one chunk whatever the
number of rows. An exception raised while the rows are produced (bad input found late)
aborts the COPY, and with it the caller's transaction, and is raised as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.storage.driver_errors import translate_errors
from rhesis_pipeline.storage.queries import Q

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: Characters handed to COPY per read.
COPY_CHUNK = 256 * 1024

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def copy_rows(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Iterable[Iterable[str | None]],
) -> int:
    """COPY *rows* (values as str or None, in *columns* order; any iterable, read once)
    into *table* (``schema.name`` or ``name``) inside *conn*'s transaction; returns how
    many rows were copied."""
    from psycopg2 import sql

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


def _copy_escape(value: str) -> str:
    """*value* in COPY's text format: backslash, newline, carriage return, tab escaped."""
    # Most values (ids, JSON without backslashes) need nothing: test before translating.
    if "\\" in value or "\n" in value or "\t" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value
