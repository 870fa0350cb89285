"""Named runtime SQL, loaded once from ``sql/queries.sql``.

Use ``queries.Q["enqueue"]`` (a SQLAlchemy ``TextClause``); no SQL strings live in logic.
"""

from __future__ import annotations

import re
from importlib import resources

from sqlalchemy import TextClause, text

_SECTION = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)
#: A ``:name`` parameter (not a ``::type`` cast).
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def parse(source: str) -> dict[str, str]:
    """Split a queries file into {name: sql}; refuses duplicate or empty sections."""
    parts = _SECTION.split(source)
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


def _load() -> dict[str, TextClause]:
    source = (
        resources.files("rhesis_pipeline.storage")
        .joinpath("sql")
        .joinpath("queries.sql")
        .read_text("utf-8")
    )
    return {name: text(sql) for name, sql in parse(source).items()}


Q: dict[str, TextClause] = _load()


def pyformat(name: str) -> str:
    """Named query *name* with psycopg2's ``%(param)s`` placeholders, for raw connections."""
    return PARAM.sub(r"%(\1)s", Q[name].text)
