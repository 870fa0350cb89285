"""Suite validation: every problem of a parsed suite, each with its path, before anything
is enqueued.

Beyond the schemas (:mod:`rhesis_pipeline.suites.schema`): duplicate test ids; a test's
other keys are its data fields (``prompt``, anything a ``{{placeholder}}`` or a python
target reads), but one that no placeholder uses is refused when it is a run option
(``max_retries`` …, which belongs under ``defaults``) or looks like a misspelt reserved key
(``metircs``: "did you mean 'metrics'?"). ``vars``, a mapping, holds data fields that are
never checked; placeholders find a field there too. Also refused: regexes that do not
compile, JSONPaths that do not parse, URLs that do not parse (no scheme, a space, a bad
port), a placeholder a test has no field for, Python targets that cannot be imported,
text that cannot be stored (NUL, lone surrogates), numbers that are not finite, and
``max_backoff_ms`` below ``min_backoff_ms``.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from rhesis_pipeline.execution.attempt import InvalidExecutor
from rhesis_pipeline.execution.executors import validate_executor
from rhesis_pipeline.execution.http_endpoint import LIMIT_KEYS, PLACEHOLDER, url_problem
from rhesis_pipeline.execution.json_path import compile_json_path
from rhesis_pipeline.execution.judge_spec import InvalidJudge, validate_judge
from rhesis_pipeline.execution.values import problems as value_problems
from rhesis_pipeline.suites.schema import (
    ENDPOINT_SCHEMAS,
    METRIC_SCHEMAS,
    OPTION_KEYS,
    SCHEMA,
    TEST_KEYS,
    InvalidSuite,
    Suite,
    format_path,
    known,
    schema_errors,
)

#: Problems listed in one error (the count of the others is said).
MAX_LISTED = 50

_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}


def validate_suite(data: Any, source: str = "<suite>") -> Suite:
    """The Suite that *data* (a parsed file named *source*) describes; raises InvalidSuite
    listing every problem."""
    if data is None:
        raise InvalidSuite(
            f"{source}: the file is empty; a suite is a mapping with name, endpoint and tests"
        )
    if not isinstance(data, dict):
        raise InvalidSuite(
            f"{source}: a suite is a mapping with name, endpoint and tests; "
            f"got {_KINDS.get(type(data), type(data).__name__)}"
        )
    # Text and numbers that could not be stored first: the checks below quote values.
    unstorable = value_problems(data, format_path)
    if unstorable:
        _refuse(source, unstorable)
    problems = schema_errors(data, SCHEMA, [])
    endpoint = data.get("endpoint")
    if isinstance(endpoint, dict) and known(endpoint.get("type"), ENDPOINT_SCHEMAS):
        problems += schema_errors(endpoint, ENDPOINT_SCHEMAS[endpoint["type"]], ["endpoint"])
    raw_tests = data.get("tests")
    tests: list[Any] = raw_tests if isinstance(raw_tests, list) else []

    # Semantic checks the schema cannot express.
    used = _placeholders(endpoint)
    seen: dict[str, int] = {}
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            continue
        for name in test:
            problem = _test_key_problem(name, used)
            if problem:
                problems.append(f"tests[{i}]: {problem}")
        if "id" in test and isinstance(test["id"], str | int) and not isinstance(test["id"], bool):
            key = str(test["id"])
            if key in seen:
                problems.append(
                    f"tests[{i}].id: {key!r} duplicates tests[{seen[key]}].id; ids must be unique"
                )
            else:
                seen[key] = i
        metrics = test.get("metrics")
        for j, metric in enumerate(metrics if isinstance(metrics, list) else []):
            if isinstance(metric, dict) and known(metric.get("type"), METRIC_SCHEMAS):
                where: list[str | int] = ["tests", i, "metrics", j]
                problems += schema_errors(metric, METRIC_SCHEMAS[metric["type"]], where)
                problems += _metric_semantics(metric, format_path(where))
    defaults = data.get("defaults") or {}
    if isinstance(defaults, dict) and not problems:
        problems += _defaults_semantics(defaults)
    if isinstance(endpoint, dict) and not problems:
        problems += _endpoint_semantics(endpoint, tests)

    if problems:
        _refuse(source, problems)

    options = {k: v for k, v in defaults.items() if k != "time_limit_s"}
    if "time_limit_s" in defaults:
        options["time_limit_ms"] = int(defaults["time_limit_s"] * 1000)
    assert isinstance(endpoint, dict)  # the schema said so
    return Suite(
        name=data["name"],
        endpoint=_endpoint_spec(endpoint),
        tests=[{**t, "id": str(t["id"])} for t in tests],
        options=options,
        source=source,
    )


def _refuse(source: str, problems: list[str]) -> NoReturn:
    """Raise InvalidSuite: one line for one problem, else a list (MAX_LISTED shown)."""
    if len(problems) == 1:
        raise InvalidSuite(f"{source}: {problems[0]}")
    listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
    more = f"\n  … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise InvalidSuite(f"{source}: {len(problems)} problem(s):\n{listed}{more}")


def _placeholders(endpoint: Any) -> set[str]:
    """The fields an HTTP endpoint's ``{{field}}`` placeholders use (none for python)."""
    if not isinstance(endpoint, dict) or endpoint.get("type") != "http":
        return set()
    parts = [endpoint.get("url"), endpoint.get("headers"), endpoint.get("body")]
    return set(PLACEHOLDER.findall(json.dumps(parts, default=str)))


# -- "did you mean": a test's keys ------------------------------------------------------


def _test_key_problem(key: Any, used: set[str]) -> str | None:
    """Why a test's key is refused, or None. A test's data fields sit beside ``id`` and
    ``metrics``, so a misspelt ``metircs`` would be data and its metrics never run: a key
    that no placeholder uses (*used*) and that is a run option, or within a small edit
    distance of a reserved key, is refused. Fields under ``vars`` are not checked."""
    if not isinstance(key, str) or key in TEST_KEYS or key in used:
        return None
    if key in OPTION_KEYS:
        return f"{key!r} is a run option, not a test field: set it under defaults"
    for reserved in (*TEST_KEYS[:2], *OPTION_KEYS):
        if _near(key, reserved):
            return (
                f"unknown key {key!r}: did you mean {reserved!r}? "
                "(put a data field of that name under vars)"
            )
    return None


def _near(key: str, reserved: str) -> bool:
    """Whether *key* looks like a misspelling of *reserved*: the same ignoring case and
    ``-``/``_``, or within 1 edit (5 letters or fewer) or 2 edits (longer) of it, a swap of
    two neighbours counting as one. Two-letter keys (``id``) match only their case variants."""
    a = key.lower().replace("-", "_")
    if a == reserved:
        return True
    allowed = 0 if len(reserved) <= 2 else 1 if len(reserved) <= 5 else 2
    return abs(len(a) - len(reserved)) <= allowed and _distance(a, reserved) <= allowed


def _distance(a: str, b: str) -> int:
    """Edit distance of *a* and *b* (insert, delete, replace, swap of neighbours)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


# -- what a schema cannot say -----------------------------------------------------------


def _defaults_semantics(defaults: dict[str, Any]) -> list[str]:
    from rhesis_pipeline.runs.options import RunOptions

    minimum = defaults.get("min_backoff_ms", RunOptions.min_backoff_ms)
    maximum = defaults.get("max_backoff_ms", RunOptions.max_backoff_ms)
    if maximum >= minimum:
        return []
    if "max_backoff_ms" not in defaults:
        return [
            f"defaults.min_backoff_ms: {minimum} is more than defaults.max_backoff_ms "
            f"({maximum}, the default); lower it, or set max_backoff_ms to at least {minimum}"
        ]
    implicit = "" if "min_backoff_ms" in defaults else ", the default"
    return [
        f"defaults.max_backoff_ms: {maximum} is less than defaults.min_backoff_ms "
        f"({minimum}{implicit}); make it at least {minimum}"
    ]


def _metric_semantics(metric: dict[str, Any], where: str) -> list[str]:
    kind = metric["type"]
    if kind == "regex" and isinstance(metric.get("pattern"), str):
        try:
            re.compile(metric["pattern"])
        except re.error as exc:
            return [
                f"{where}.pattern: {metric['pattern']!r} is not a valid regular expression: {exc}"
            ]
    if kind == "llm_judge" and not schema_errors(metric, METRIC_SCHEMAS[kind], []):
        try:
            validate_judge(metric)  # the URL, {{env:NAME}} in headers: what a schema cannot say
        except InvalidJudge as exc:
            return [f"{where}.{exc.key}: {exc.problem}"]
    if kind == "json_path_equals" and isinstance(metric.get("path"), str):
        try:
            compile_json_path(metric["path"])
        except Exception as exc:
            return [f"{where}.path: {metric['path']!r} is not a valid JSONPath: {exc}"]
    return []


def _endpoint_semantics(endpoint: dict[str, Any], tests: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if endpoint["type"] == "http":
        url = endpoint["url"]
        problem = url_problem(url)
        if problem:
            problems.append(f"endpoint.url: {url!r} {problem}")
        if "response_path" in endpoint:
            try:
                compile_json_path(endpoint["response_path"])
            except Exception as exc:
                problems.append(
                    f"endpoint.response_path: {endpoint['response_path']!r} is not a valid "
                    f"JSONPath: {exc}"
                )
        fields = _placeholders(endpoint)
        for i, test in enumerate(tests):
            given = set(test) | set(test.get("vars") or {})
            missing = sorted(f for f in fields if f not in given)
            if missing:
                problems.append(
                    f"tests[{i}]: the endpoint uses {', '.join('{{' + m + '}}' for m in missing)}, "
                    "which this test does not have"
                )
    else:
        try:
            validate_executor(endpoint)
        except InvalidExecutor as exc:
            problems.append(f"endpoint.target: {exc}")
    return problems


def _endpoint_spec(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The executor spec of a valid *endpoint* (defaults filled in)."""
    if endpoint["type"] == "python":
        return {"type": "python", "target": endpoint["target"]}
    return {
        "type": "http",
        "url": endpoint["url"],
        "method": endpoint.get("method", "POST"),
        "headers": endpoint.get("headers") or {},
        "body": endpoint.get("body"),
        "response_path": endpoint.get("response_path"),
        "timeout_s": endpoint.get("timeout_s", 30),
        # The endpoint limits, where the suite declares them (absent: the default limit).
        **{key: endpoint[key] for key in LIMIT_KEYS if key in endpoint},
    }
