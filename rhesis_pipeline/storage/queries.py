"""Named runtime SQL, loaded once from ``sql/queries.sql``.

Use ``queries.Q["enqueue"]`` (a SQLAlchemy ``TextClause``); no SQL strings live in logic.
In the file, a query starts at its ``-- name: NAME`` line and ends where the next one
starts; every comment line is dropped, so the section headers (``-- ===== Title =====``)
and the descriptions are for readers only.
"""

from __future__ import annotations

import re
from importlib import resources

from sqlalchemy import TextClause, text

#: The first line of a query: ``-- name: NAME``.
NAME_LINE = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)
#: The header of a section of queries: ``-- ===== Title =====``.
SECTION_LINE = re.compile(r"^-- ===== (.+) =====\s*$", re.MULTILINE)
#: A ``:name`` parameter (not a ``::type`` cast).
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def parse(source: str) -> dict[str, str]:
    """Split a queries file into {name: sql}; refuses duplicate or empty queries."""
    parts = NAME_LINE.split(source)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        if not sql:
            raise ValueError(f"query {name!r} is empty")
        found[name] = sql
    return found


def source() -> str:
    """The text of ``sql/queries.sql``."""
    return (
        resources.files("rhesis_pipeline.storage")
        .joinpath("sql")
        .joinpath("queries.sql")
        .read_text("utf-8")
    )


def _load() -> dict[str, TextClause]:
    return {name: text(sql) for name, sql in parse(source()).items()}


Q: dict[str, TextClause] = _load()


def pyformat(name: str) -> str:
    """Named query *name* with psycopg2's ``%(param)s`` placeholders, for raw connections."""
    return PARAM.sub(r"%(\1)s", Q[name].text)
