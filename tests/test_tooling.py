"""CI's shape: the static checks run as their own first step, then exactly the README's
test command; the fast tests come before the slow ones (tests/conftest.py)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ci_steps() -> list[str]:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_ci_lints_first_then_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text()
    (test_command,) = re.findall(r"^python -m pytest$", readme, flags=re.MULTILINE)[:1]
    steps = ci_steps()
    assert steps.index("bin/lint") < steps.index(test_command)
    assert steps[-1] == test_command  # the closing line CI reads is the whole suite's


def test_bin_lint_runs_every_static_check_and_stops_at_the_first_failure():
    script = (REPO / "bin" / "lint").read_text()
    assert "set -euo pipefail" in script
    for check in ("ruff check .", "ruff format --check .", "mypy", "lint-imports"):
        assert f"step {check}\n" in script, check
    # The docs site, last: a broken link or anchor (any warning) fails the build.
    assert re.search(r"^step mkdocs build --strict .*--site-dir ", script, flags=re.MULTILINE)


def test_the_readme_gives_the_fast_command():
    assert '```sh\npython -m pytest -m "not slow"\n```' in (REPO / "README.md").read_text()
