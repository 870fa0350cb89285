"""Structure rules a newcomer relies on, checked on the source.

* Every SQL statement of the package lives in ``sql/queries.sql`` (named), behind the one
  database boundary; migrations are the only other place with SQL.
* Every named query is used (no dead SQL left behind by a refactoring).
* Every query sits under a section of ``sql/queries.sql`` and says what it does.

* Nothing in the package imports the worker entry point, ``rhesis_pipeline.actors``.

(No import cycles: import-linter's ``acyclic_siblings`` contract in pyproject.toml, run
by tests/test_tooling.py.)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from rhesis_pipeline.storage import queries
from rhesis_pipeline.storage.queries import Q

PACKAGE = Path(__file__).resolve().parent.parent / "rhesis_pipeline"

#: The start of an SQL statement: a keyword in capitals followed by more text.
SQL_START = re.compile(
    r"^\s*(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|WITH|LISTEN|UNLISTEN|NOTIFY|SET|CREATE|"
    r"ALTER|DROP|PREPARE|EXECUTE|COPY|TRUNCATE|GRANT|REVOKE|BEGIN|COMMIT|ROLLBACK)\s+\S"
)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in *source* that starts like SQL (docstrings
    excepted); an f-string is checked with ``{}`` for each value it formats."""
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                for v in node.values
            )
        else:
            continue
        if SQL_START.match(text):
            found.append((node.lineno, text.strip().splitlines()[0][:60]))
    return found


def test_the_sql_detector_finds_sql_and_ignores_prose():
    source = '''
"""SELECT this docstring is prose."""
import x
A = "SELECT 1 FROM t"
B = f"LISTEN {x}"
C = "DELETE"  # an HTTP method
D = "select what the user asked for"
def f():
    """UPDATE the docs."""
    return "UPDATE rhesis.workers SET x = 1"
'''
    assert [line for line, _ in sql_strings(source)] == [4, 5, 10]


def test_no_sql_outside_queries_sql():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in sql_strings(path.read_text())
    ]
    assert offenders == [], "SQL belongs in rhesis_pipeline/storage/sql/queries.sql:\n" + "\n".join(
        offenders
    )


def test_every_named_query_is_used():
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    unused = [name for name in Q if f'"{name}"' not in source]
    assert unused == []


def outline(source: str) -> list[tuple[str | None, str, str | None]]:
    """(section, query name, description line) of every query of a queries file, in order:
    the section is the last ``-- ===== Title =====`` above the query (None before the
    first), the description the comment line right after its name line (None if the next
    line is not a comment or is empty)."""
    found: list[tuple[str | None, str, str | None]] = []
    section = None
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if header := queries.SECTION_LINE.match(line):
            section = header.group(1)
        elif name := queries.NAME_LINE.match(line):
            after = lines[i + 1] if i + 1 < len(lines) else ""
            described = after.startswith("-- ") and len(after) > len("-- ")
            found.append((section, name.group(1), after[3:] if described else None))
    return found


def test_every_query_sits_under_a_section_and_says_what_it_does():
    entries = outline(queries.source())
    assert [name for _, name, _ in entries] == list(Q)
    assert [name for section, name, _ in entries if section is None] == []
    assert [name for _, name, description in entries if description is None] == []
    sections = [section for section, _, _ in entries]
    # One block per section: a section does not start again further down.
    assert sorted(set(sections), key=sections.index) == [
        s for i, s in enumerate(sections) if i == 0 or sections[i - 1] != s
    ]


def test_the_outline_finds_queries_outside_sections_and_without_descriptions():
    source = """-- header
-- name: stray
SELECT 1;
-- ===== Claims =====
-- What claims do.
-- name: described
-- Claims one message.
SELECT 2;
-- name: bare
SELECT 3;
"""
    assert outline(source) == [
        (None, "stray", None),
        ("Claims", "described", "Claims one message."),
        ("Claims", "bare", None),
    ]
    # Section headers and descriptions are comments: the SQL is what it was.
    assert queries.parse(source) == {
        "stray": "SELECT 1",
        "described": "SELECT 2",
        "bare": "SELECT 3",
    }


def test_nothing_in_the_package_imports_the_worker_entry_point():
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "actors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                names = [base] + [f"{base}.{a.name}" for a in node.names]
                if node.level:  # relative: "from .actors import x", "from . import actors"
                    names = [n.lstrip(".") for n in names]
            if any(
                n in ("rhesis_pipeline.actors", "actors") or n.endswith(".actors") for n in names
            ):
                importers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert importers == []
