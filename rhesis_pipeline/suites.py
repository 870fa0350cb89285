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
Unknown keys and duplicate test ids are errors; so are regexes that do not compile,
JSONPaths that do not parse, URLs without a scheme and Python targets that cannot be
imported.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidSubmission

METRIC_TYPES = ("contains", "not_contains", "equals", "regex", "json_path_equals", "max_latency_ms")
#: {{field}} placeholders in an HTTP endpoint's url, headers and body.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


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
                "min_backoff_ms": {"type": "integer", "minimum": 1},
                "max_backoff_ms": {"type": "integer", "minimum": 1},
                "time_limit_s": {"type": "number", "exclusiveMinimum": 0},
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
    """Parse JSON or YAML text; InvalidSuite naming the file and the position if neither."""
    import yaml

    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSuite(
                f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSuite(f"{source}: not valid JSON or YAML: {problem}{where}") from None


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises InvalidSuite listing every problem."""
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSuite(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSuite(f"{source}: cannot read: {exc}") from None
    return validate_suite(parse_text(text, source), source)


def validate_suite(data: Any, source: str = "<suite>") -> Suite:
    if not isinstance(data, dict):
        raise InvalidSuite(
            f"{source}: a suite is a mapping with name, endpoint and tests; "
            f"got {type(data).__name__}"
        )
    problems = _schema_errors(data, SCHEMA, [])
    endpoint = data.get("endpoint")
    if isinstance(endpoint, dict) and endpoint.get("type") in _ENDPOINT_SCHEMAS:
        problems += _schema_errors(endpoint, _ENDPOINT_SCHEMAS[endpoint["type"]], ["endpoint"])
    raw_tests = data.get("tests")
    tests: list[Any] = raw_tests if isinstance(raw_tests, list) else []

    # Semantic checks the schema cannot express.
    seen: dict[str, int] = {}
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            continue
        if "id" in test and isinstance(test["id"], str | int) and not isinstance(test["id"], bool):
            key = str(test["id"])
            if key in seen:
                problems.append(
                    f"tests[{i}].id: {key!r} duplicates tests[{seen[key]}].id; ids must be unique"
                )
            else:
                seen[key] = i
        for j, metric in enumerate(test.get("metrics") or []):
            if isinstance(metric, dict) and metric.get("type") in _METRIC_SCHEMAS:
                where = ["tests", i, "metrics", j]
                problems += _schema_errors(metric, _METRIC_SCHEMAS[metric["type"]], where)
                problems += _metric_semantics(metric, format_path(where))
    if isinstance(endpoint, dict) and not problems:
        problems += _endpoint_semantics(endpoint, tests)

    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise InvalidSuite(f"{source}: {len(problems)} problem(s):\n{listed}{more}")

    defaults = data.get("defaults") or {}
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
        url = endpoint["url"]
        from urllib.parse import urlsplit

        parts = urlsplit(PLACEHOLDER.sub("x", url))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(
                f"endpoint.url: {url!r} is not an absolute http(s) URL; write it like "
                "https://host:port/path"
            )
        if "response_path" in endpoint:
            try:
                _parse_json_path(endpoint["response_path"])
            except Exception as exc:
                problems.append(
                    f"endpoint.response_path: {endpoint['response_path']!r} is not a valid "
                    f"JSONPath: {exc}"
                )
        fields = set(
            PLACEHOLDER.findall(json.dumps([url, endpoint.get("headers"), endpoint.get("body")]))
        )
        for i, test in enumerate(tests):
            missing = sorted(f for f in fields if f not in test)
            if missing:
                problems.append(
                    f"tests[{i}]: the endpoint uses {', '.join('{{' + m + '}}' for m in missing)}, "
                    "which this test does not have"
                )
    else:
        from .executors import InvalidExecutor, validate_executor

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
