"""The package's layout, checked on the source: what a newcomer relies on to find things.

* The folders follow a test's life (``storage``, ``execution``, ``suites``, ``runs``,
  ``worker``, then ``maintenance``, ``monitor``, ``dashboard``, ``cli``), each with a
  docstring that says what it holds; the layers between them are import-linter's
  ``layers`` contract in pyproject.toml (run by ``bin/lint``).
* No module is longer than :data:`MAX_LINES`: one that grows past it does two jobs.
* Hand-offs are typed: nothing of ours is attached to dramatiq's message objects.
* No aliases kept "for callers of earlier releases": nothing was ever released.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rhesis_pipeline"

#: Lines a module may have; past this it does more than one job.
MAX_LINES = 400

STAGES = [
    "storage",
    "execution",
    "suites",
    "runs",
    "worker",
    "maintenance",
    "monitor",
    "dashboard",
    "cli",
    "tracing",
]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_stage_packages_exist_and_say_what_they_hold() -> None:
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), f"missing package rhesis_pipeline/{stage}/"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"rhesis_pipeline/{stage}/__init__.py needs a docstring"


def test_the_top_level_holds_only_entry_points_and_what_every_layer_shares() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == [
        "__init__.py",
        "actors.py",
        "demo.py",
        "demo_judge.py",  # the demo's fake LLM judge, beside its fake chat endpoint
        "demo_target.py",
        "errors.py",
        "identity.py",
        "logs.py",
        "settings.py",
    ]


def test_no_module_is_longer_than_max_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


def test_nothing_of_ours_is_attached_to_dramatiq_messages() -> None:
    pattern = re.compile(r"setattr\(\s*(message|proxy|msg)\b|\b(message|proxy)\._rhesis|_rhesis_")
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in _modules()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_no_aliases_for_releases_that_never_happened() -> None:
    pattern = re.compile(
        r"= Run$|kept for callers|RunSummary|get_progress|\bActiveRun\b|\bLOCK_KEY\b"
    )
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("rhesis_pipeline", "examples", "benchmarks")
        for p in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
