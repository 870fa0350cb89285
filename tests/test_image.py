"""The image's rules, checked without docker: the Dockerfile (multi-stage, a final stage
without build tools, a non-root numeric user, exec-form ENTRYPOINT/CMD with tini, no
secrets, no ADD of URLs), the .dockerignore, and the entry point's refusal of an unknown
role. Every rule is also run against a Dockerfile that breaks it, so none can pass
vacuously. The roles themselves run in tests/test_entrypoint.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "bin" / "entrypoint"
ROLES = ("worker", "scheduler", "dashboard", "migrate", "health", "probe")

#: Packages that compile things; none may be installed in the final stage.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|build-base|cmake|cargo|rustc|"
    r"[\w.+-]+-dev|[\w.+-]+-devel)\b"
)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    joined, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    if current:
        joined.append(current)
    result = []
    for item in joined:
        keyword, _, rest = item.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage (each starts at a FROM)."""
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def _exec_form(rest: str) -> bool:
    try:
        value = json.loads(rest)
    except ValueError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _assignments(keyword: str, rest: str) -> list[tuple[str, str | None]]:
    """(name, value or None) of an ENV or ARG instruction."""
    if keyword == "ENV" and "=" not in rest.split(" ", 1)[0]:  # legacy `ENV NAME value`
        name, _, value = rest.partition(" ")
        return [(name, value.strip() or None)]
    pairs = []
    for token in re.findall(r'(?:[^\s"]+|"[^"]*")+', rest):
        name, sep, value = token.partition("=")
        pairs.append((name, value.strip('"') if sep and value.strip('"') else None))
    return pairs


def dockerfile_problems(text: str) -> list[str]:
    """Every broken rule of Dockerfile *text*, one line each (empty: all kept)."""
    problems = []
    all_stages = stages(text)
    if len(all_stages) < 2:
        problems.append("not multi-stage: build the wheel in a builder stage")
    final = all_stages[-1] if all_stages else []
    for keyword, rest in instructions(text):
        if keyword == "ADD" and re.search(r"\b(https?|ftp|git)://|git@", rest):
            problems.append(f"ADD of a URL: {rest}")
        if keyword in ("ENV", "ARG"):
            for name, value in _assignments(keyword, rest):
                if SECRET_NAME.search(name) and value is not None:
                    problems.append(f"{keyword} {name} bakes a secret into the image")
    users = [rest for keyword, rest in final if keyword == "USER"]
    if not users:
        problems.append("no USER in the final stage: it runs as root")
    else:
        user = users[-1].split(":")[0].strip()
        if user in ("root", "0") or not user.isdigit():
            problems.append(f"USER {users[-1]}: use a numeric non-root UID")
    for wanted in ("ENTRYPOINT", "CMD"):
        found = [rest for keyword, rest in final if keyword == wanted]
        if not found:
            problems.append(f"no {wanted} in the final stage")
        elif not _exec_form(found[-1]):
            problems.append(f"{wanted} {found[-1]} is in shell form: use the exec form [...]")
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    if entry and _exec_form(entry[-1]) and json.loads(entry[-1])[:2] != ["tini", "--"]:
        problems.append("ENTRYPOINT does not start with tini --: SIGTERM may not reach dramatiq")
    for keyword, rest in final:
        if keyword != "RUN":
            continue
        installs = re.findall(r"(?:apt-get|apt|apk)\s+(?:install|add)\s+([^&;|]*)", rest)
        for packages in installs:
            tool = BUILD_TOOLS.search(packages)
            if tool:
                problems.append(f"the final stage installs build tool {tool.group(0)}")
        if re.search(r"\bpip\s+(wheel|install\s+[^&;]*--no-binary)", rest):
            problems.append("the final stage builds wheels: do that in the builder stage")
    return problems


def test_the_dockerfile_keeps_every_rule():
    assert dockerfile_problems((REPO / "Dockerfile").read_text()) == []


def test_the_final_stage_installs_the_wheel_with_its_extras_and_no_pip_cache():
    text = (REPO / "Dockerfile").read_text()
    final = stages(text)[-1]
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    envs = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert re.search(
        r"pip install --no-index --find-links /wheels \"rhesis-pipeline\[dashboard,otel\]\"", runs
    )
    assert "PIP_NO_CACHE_DIR=1" in envs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    builder = stages(text)[0]
    assert any(k == "RUN" and "pip wheel" in rest for k, rest in builder)
    assert any(
        k == "COPY" and "bin/entrypoint /usr/local/bin/rhesis-entrypoint" in rest
        for k, rest in final
    )
    assert any(k == "HEALTHCHECK" for k, _ in final)
    assert any(k == "LABEL" and "org.opencontainers.image.title" in rest for k, rest in final)


GOOD = """\
FROM python:3.11-slim AS builder
RUN pip wheel --wheel-dir /wheels .
FROM python:3.11-slim
ARG VERSION=dev
ENV PIP_NO_CACHE_DIR=1 \\
    RHESIS_DASHBOARD_TOKEN
RUN apt-get update && apt-get install --yes --no-install-recommends tini
USER 10001:10001
ENTRYPOINT ["tini", "--", "rhesis-entrypoint"]
CMD ["worker"]
"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("USER 10001:10001", "USER root", "USER root"),
        ("USER 10001:10001", "USER 0:0", "USER 0:0"),
        ("USER 10001:10001", "USER rhesis", "numeric non-root UID"),
        ("USER 10001:10001\n", "", "no USER"),
        (
            'ENTRYPOINT ["tini", "--", "rhesis-entrypoint"]',
            "ENTRYPOINT rhesis-entrypoint",
            "shell form",
        ),
        ('CMD ["worker"]', "CMD worker", "CMD worker is in shell form"),
        (
            'ENTRYPOINT ["tini", "--", "rhesis-entrypoint"]',
            'ENTRYPOINT ["rhesis-entrypoint"]',
            "tini",
        ),
        ("ARG VERSION=dev", "ADD https://example.com/x.tgz /x", "ADD of a URL"),
        ("ARG VERSION=dev", "ARG API_KEY=abc123", "ARG API_KEY"),
        (
            "    RHESIS_DASHBOARD_TOKEN",
            "    RHESIS_DASHBOARD_TOKEN=s3cret",
            "RHESIS_DASHBOARD_TOKEN",
        ),
        ("ARG VERSION=dev", "ENV DB_PASSWORD hunter2", "ENV DB_PASSWORD"),
        ("--no-install-recommends tini", "--no-install-recommends tini gcc", "build tool gcc"),
        ("--no-install-recommends tini", "tini libpq-dev", "build tool libpq-dev"),
        ("ARG VERSION=dev", "RUN pip wheel .", "builds wheels"),
        (
            "FROM python:3.11-slim AS builder\nRUN pip wheel --wheel-dir /wheels .\n",
            "",
            "multi-stage",
        ),
    ],
)
def test_each_rule_fails_a_dockerfile_that_breaks_it(old, new, problem):
    assert dockerfile_problems(GOOD) == []
    bad = GOOD.replace(old, new)
    assert bad != GOOD
    problems = dockerfile_problems(bad)
    assert any(problem in p for p in problems), problems


def test_the_dockerignore_keeps_git_venvs_caches_and_the_site_out():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", "site", ".env"):
        assert entry in ignored, entry
    # What the builder stage copies must not be ignored.
    for needed in ("pyproject.toml", "README.md", "rhesis_pipeline", "migrations", "examples"):
        assert needed not in ignored, needed
        copied = [
            rest for k, rest in instructions((REPO / "Dockerfile").read_text()) if k == "COPY"
        ]
        assert any(needed in rest for rest in copied), needed


def test_the_entry_point_is_posix_sh_and_execs_every_role():
    script = ENTRYPOINT.read_text()
    assert script.startswith("#!/bin/sh\n")
    assert ENTRYPOINT.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    for role in ROLES:
        block = script.split(f"    {role})", 1)[1].split(";;", 1)[0]
        assert "exec rhesis-" in block, role


@pytest.mark.parametrize("args", [["nonsense"], [], ["Worker", "--processes", "1"]])
def test_an_unknown_or_missing_role_is_one_line_naming_the_roles_and_exit_2(args):
    done = subprocess.run(
        [str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for role in ROLES:
        assert role in lines[0]
