"""Suite files: load, validate, and turn into a run submission.

A suite (JSON or YAML)::

    name: chat smoke
    endpoint:
      type: http                      # or: type: python, target: "module:function"
      url: http://localhost:8000/v1/chat
      method: POST                    # default POST
      headers: {Authorization: "Bearer x"}
      body: {"messages": [{"role": "user", "content": "{{prompt}}"}]}
      response_path: "$.choices[0].message.content"   # JSONPath; default: the whole body
      timeout_s: 30
    defaults: {max_retries: 2, min_backoff_ms: 1000, max_backoff_ms: 60000, time_limit_s: 60}
    tests:
      - id: greet
        prompt: Say hello
        metrics:
          - {type: contains, value: hello}

Validation happens before anything is enqueued and reports every problem with the file,
the path inside it (``tests[3].metrics[0].type``), what is wrong and what is allowed.
Unknown keys and duplicate test ids are errors. A test's other keys are its data fields
(``prompt``, anything a ``{{placeholder}}`` or a python target reads); one that no
placeholder uses is refused when it is a run option (``max_retries`` …, which belongs under
``defaults``) or looks like a misspelt reserved key (``metircs``: "did you mean
'metrics'?"). ``vars``, a mapping, holds data fields that are never checked; placeholders
find a field there too. So are regexes that do not compile,
JSONPaths that do not parse, URLs that do not parse (no scheme, a space, a bad port),
Python targets that cannot be imported, text that cannot be stored (NUL, lone
surrogates), numbers that are not finite, and ``max_backoff_ms`` below
``min_backoff_ms``. Files larger than :data:`MAX_SUITE_BYTES`, duplicate keys and YAML
aliases that expand past a bound (:mod:`rhesis_pipeline.suites.yaml_reader`) are refused while
reading, before anything is built from them.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.execution.values import problems as value_problems

METRIC_TYPES = ("contains", "not_contains", "equals", "regex", "json_path_equals", "max_latency_ms")
#: {{field}} placeholders in an HTTP endpoint's url, headers and body.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: Largest suite file read, in bytes (10 MiB: tens of thousands of tests).
MAX_SUITE_BYTES = 10 * 1024 * 1024
#: Longest backoff and time limit a suite may ask for (one day).
MAX_BACKOFF_MS = 86_400_000
MAX_TIME_LIMIT_S = 86_400


#: Keys of a test that are not its data: its id, its metrics, and ``vars`` (a mapping of
#: data fields that are never checked).
TEST_KEYS = ("id", "metrics", "vars")
#: Run options: they belong under ``defaults``; on a test they would be taken as data.
OPTION_KEYS = ("max_retries", "min_backoff_ms", "max_backoff_ms", "time_limit_s")


class InvalidSuite(InvalidSubmission):
    """A suite file is malformed; the message lists every problem found."""


def _metric(type_: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": type_}, "name": {"type": "string"}, **properties},
        "required": ["type", *required],
        "additionalProperties": False,
    }


_TEXT = {"type": "string"}
_METRIC_SCHEMAS = {
    "contains": _metric(
        "contains", {"value": _TEXT, "case_sensitive": {"type": "boolean"}}, ["value"]
    ),
    "not_contains": _metric(
        "not_contains", {"value": _TEXT, "case_sensitive": {"type": "boolean"}}, ["value"]
    ),
    "equals": _metric("equals", {"value": {}, "case_sensitive": {"type": "boolean"}}, ["value"]),
    "regex": _metric("regex", {"pattern": _TEXT}, ["pattern"]),
    "json_path_equals": _metric(
        "json_path_equals", {"path": _TEXT, "value": {}}, ["path", "value"]
    ),
    "max_latency_ms": _metric(
        "max_latency_ms", {"value": {"type": "number", "exclusiveMinimum": 0}}, ["value"]
    ),
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "endpoint": {
            "type": "object",
            "properties": {"type": {"enum": ["http", "python"]}},
            "required": ["type"],
        },
        "defaults": {
            "type": "object",
            "properties": {
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 20},
                "min_backoff_ms": {"type": "integer", "minimum": 1, "maximum": MAX_BACKOFF_MS},
                "max_backoff_ms": {"type": "integer", "minimum": 1, "maximum": MAX_BACKOFF_MS},
                "time_limit_s": {
                    "type": "number",
                    "minimum": 0.001,
                    "maximum": MAX_TIME_LIMIT_S,
                },
            },
            "additionalProperties": False,
        },
        "tests": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "integer"]},
                    "prompt": {"type": "string"},
                    "vars": {"type": "object"},
                    "metrics": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"type": {"enum": list(METRIC_TYPES)}},
                            "required": ["type"],
                        },
                    },
                },
                "required": ["id"],
            },
        },
    },
    "required": ["name", "endpoint", "tests"],
    "additionalProperties": False,
}

_ENDPOINT_SCHEMAS = {
    "http": {
        "type": "object",
        "properties": {
            "type": {"const": "http"},
            "url": {"type": "string", "minLength": 1},
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {},
            "response_path": {"type": "string"},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        },
        "required": ["type", "url"],
        "additionalProperties": False,
    },
    "python": {
        "type": "object",
        "properties": {"type": {"const": "python"}, "target": {"type": "string"}},
        "required": ["type", "target"],
        "additionalProperties": False,
    },
}


@dataclass
class Suite:
    name: str
    endpoint: dict[str, Any]
    tests: list[dict[str, Any]]
    options: dict[str, int]
    source: str


def format_path(path: deque | list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_errors(instance: Any, schema: dict[str, Any], prefix: list) -> list[str]:
    from jsonschema import Draft202012Validator

    problems = []
    for error in sorted(
        Draft202012Validator(schema).iter_errors(instance),
        key=lambda e: list(e.absolute_path).__str__(),
    ):
        where = format_path([*prefix, *error.absolute_path])
        problems.append(f"{where}: {_describe(error)}")
    return problems


def _describe(error) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        return f"{error.message.split('(')[-1].rstrip(')')}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return f"{error.instance!r} is not allowed; use one of {choices}"
    return error.message


def parse_text(text: str, source: str) -> Any:
    """Parse JSON or YAML text; InvalidSuite naming the file and the position if neither,
    or if it repeats a key, nests too deeply, or expands YAML aliases too far."""
    import yaml

    from rhesis_pipeline.suites import yaml_reader as suite_yaml

    try:
        if text.lstrip().startswith(("{", "[")):
            return json.loads(text, object_pairs_hook=_unique_keys)
        return suite_yaml.load(text)
    except json.JSONDecodeError as exc:
        raise InvalidSuite(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (suite_yaml.RefusedYAML, _DuplicateKey) as exc:
        raise InvalidSuite(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSuite(f"{source}: not valid JSON or YAML: {problem}{where}") from None
    except RecursionError:
        raise InvalidSuite(
            f"{source}: nested too deeply to read; a suite needs a few levels only"
        ) from None
    except ValueError as exc:  # a number longer than Python reads
        digits = re.search(r"value has (\d+) digits", str(exc))
        if "integer string conversion" not in str(exc):
            raise InvalidSuite(f"{source}: not valid JSON or YAML: {exc}") from None
        size = f"of {digits.group(1)} digits " if digits else ""
        raise InvalidSuite(
            f"{source}: a number {size}is longer than the {_max_digits()} digits allowed; "
            "quote it to keep it as text"
        ) from None


def _max_digits() -> int:
    return getattr(sys, "get_int_max_str_digits", lambda: 4300)()


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a JSON object whose keys are unique (json keeps the last)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(f"duplicate key {key!r}; a key may appear once in an object")
        data[key] = value
    return data


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises InvalidSuite listing every problem."""
    p = Path(path)
    source = str(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidSuite(f"{source}: no such file") from None
    except OSError as exc:
        raise InvalidSuite(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise InvalidSuite(
            f"{source}: the file is larger than {MAX_SUITE_BYTES // (1024 * 1024)} MiB; "
            "split it into several suites"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidSuite(
            f"{source}: not UTF-8 text (byte {exc.start} is not UTF-8); save it as UTF-8"
        ) from None
    return validate_suite(parse_text(text, source), source)


_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}


def _known(kind: Any, schemas: dict[str, Any]) -> bool:
    """Whether *kind* (anything a file may hold: a list, a number …) names one of *schemas*."""
    return isinstance(kind, str) and kind in schemas


def validate_suite(data: Any, source: str = "<suite>") -> Suite:
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
    unstorable = value_problems(data, lambda path: format_path(list(path)))
    if unstorable:
        _refuse(source, unstorable)
    problems = _schema_errors(data, SCHEMA, [])
    endpoint = data.get("endpoint")
    if isinstance(endpoint, dict) and _known(endpoint.get("type"), _ENDPOINT_SCHEMAS):
        problems += _schema_errors(endpoint, _ENDPOINT_SCHEMAS[endpoint["type"]], ["endpoint"])
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
            if isinstance(metric, dict) and _known(metric.get("type"), _METRIC_SCHEMAS):
                where = ["tests", i, "metrics", j]
                problems += _schema_errors(metric, _METRIC_SCHEMAS[metric["type"]], where)
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
    """Raise InvalidSuite: one line for one problem, else a list (at most 50 shown)."""
    if len(problems) == 1:
        raise InvalidSuite(f"{source}: {problems[0]}")
    listed = "\n".join(f"  {p}" for p in problems[:50])
    more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise InvalidSuite(f"{source}: {len(problems)} problem(s):\n{listed}{more}")


def _placeholders(endpoint: Any) -> set[str]:
    """The fields an HTTP endpoint's ``{{field}}`` placeholders use (none for python)."""
    if not isinstance(endpoint, dict) or endpoint.get("type") != "http":
        return set()
    parts = [endpoint.get("url"), endpoint.get("headers"), endpoint.get("body")]
    return set(PLACEHOLDER.findall(json.dumps(parts, default=str)))


def _test_key_problem(key: Any, used: set[str]) -> str | None:
    """Why a test's key is refused, or None. A test's data fields sit beside ``id`` and
    ``metrics``, so a misspelt ``metircs`` would be data and its metrics never run: a key
    that no placeholder uses and that is a run option, or within a small edit distance of
    a reserved key, is refused. Fields under ``vars`` are not checked."""
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
    if kind == "json_path_equals" and isinstance(metric.get("path"), str):
        try:
            _parse_json_path(metric["path"])
        except Exception as exc:
            return [f"{where}.path: {metric['path']!r} is not a valid JSONPath: {exc}"]
    return []


def _endpoint_semantics(endpoint: dict[str, Any], tests: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if endpoint["type"] == "http":
        from rhesis_pipeline.execution.executors import url_problem

        url = endpoint["url"]
        problem = url_problem(url)
        if problem:
            problems.append(f"endpoint.url: {url!r} {problem}")
        if "response_path" in endpoint:
            try:
                _parse_json_path(endpoint["response_path"])
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
        from rhesis_pipeline.execution.executors import InvalidExecutor, validate_executor

        try:
            validate_executor(endpoint)
        except InvalidExecutor as exc:
            problems.append(f"endpoint.target: {exc}")
    return problems


def _endpoint_spec(endpoint: dict[str, Any]) -> dict[str, Any]:
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
    }


def _parse_json_path(path: str):
    from jsonpath_ng.ext import parse

    return parse(path)
