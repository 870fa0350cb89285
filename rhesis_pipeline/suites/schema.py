"""What a suite is: its keys, their JSON Schema, and the :class:`Suite` it becomes.

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

The schemas check the shape (keys, types, ranges); :mod:`rhesis_pipeline.suites.validate`
adds what a schema cannot say and turns every problem into one line naming its path in
the file (``tests[3].metrics[0].type``), what is wrong and what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.execution.http_endpoint import MAX_LIMIT
from rhesis_pipeline.execution.metrics import BUILTIN_TYPES
from rhesis_pipeline.runs.options import MAX_TIME_LIMIT_MS

if TYPE_CHECKING:
    from jsonschema import ValidationError

METRIC_TYPES = (*BUILTIN_TYPES, "python", "llm_judge")
#: Longest backoff a suite may ask for, in milliseconds (one day).
MAX_BACKOFF_MS = 86_400_000
#: Longest time limit of one attempt a suite may ask for, in seconds: the runs' own
#: maximum (rhesis_pipeline.runs.options.MAX_TIME_LIMIT_MS, 5 minutes).
MAX_TIME_LIMIT_S = MAX_TIME_LIMIT_MS // 1000
#: Keys of a test that are not its data: its id, its metrics, and ``vars`` (a mapping of
#: data fields that are never checked).
TEST_KEYS = ("id", "metrics", "vars")
#: Run options: they belong under ``defaults``; on a test they would be taken as data.
OPTION_KEYS = ("max_retries", "min_backoff_ms", "max_backoff_ms", "time_limit_s")


class InvalidSuite(InvalidSubmission):
    """A suite file is malformed; the message lists every problem found."""


@dataclass
class Suite:
    """A validated suite, ready to submit as one run."""

    name: str
    #: The executor spec (:mod:`rhesis_pipeline.execution.executors`).
    endpoint: dict[str, Any]
    #: The tests, each with its ``id`` as text.
    tests: list[dict[str, Any]]
    #: Run options from ``defaults`` (``time_limit_s`` becomes ``time_limit_ms``).
    options: dict[str, int]
    #: Where the suite came from (a file name), as errors name it.
    source: str


#: A metric's ``threshold``: it passes when its score (in [0, 1]) is at least this (the
#: range is checked by execution.metrics.validate, whose error says the fix).
THRESHOLD = {"type": "number"}


def _metric(
    type_: str, properties: dict[str, Any], required: list[str], *, params: bool = False
) -> dict[str, Any]:
    """The schema of metric *type_*; *params*: any other key is a parameter of its own."""
    return {
        "type": "object",
        "properties": {
            "type": {"const": type_},
            "name": {"type": "string"},
            "threshold": THRESHOLD,
            **properties,
        },
        "required": ["type", *required],
        "additionalProperties": params,
    }


_TEXT = {"type": "string"}
#: The schema of each metric, by its ``type``.
METRIC_SCHEMAS = {
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
    # Your own: "module:function" called with a MetricInput; other keys are its params.
    "python": _metric("python", {"target": _TEXT}, ["target"], params=True),
    # The judge's spec (execution.judge_spec.validate_judge checks the rest: the URL,
    # {{env:NAME}} in headers).
    "llm_judge": _metric(
        "llm_judge",
        {
            "rubric": {"type": "string", "minLength": 1},
            "endpoint": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "minLength": 1},
                    "model": {"type": "string", "minLength": 1},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    "requests_per_minute": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    "limit_key": {"type": "string", "minLength": 1, "maxLength": 200},
                    "json_mode": {"type": "boolean"},
                },
                "required": ["url"],
                "additionalProperties": False,
            },
        },
        ["endpoint", "rubric"],
    ),
}

#: The schema of the whole file; an endpoint and each metric are checked further with
#: their own schema (ENDPOINT_SCHEMAS, METRIC_SCHEMAS) once their ``type`` is known.
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

#: The schema of each endpoint, by its ``type``.
ENDPOINT_SCHEMAS: dict[str, dict[str, Any]] = {
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
            # Endpoint limits shared by every worker (execution.http_endpoint.validate_limits).
            "max_concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "requests_per_minute": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "limit_key": {"type": "string", "minLength": 1, "maxLength": 200},
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


def known(kind: Any, schemas: dict[str, Any]) -> bool:
    """Whether *kind* (anything a file may hold: a list, a number …) names one of *schemas*."""
    return isinstance(kind, str) and kind in schemas


def format_path(path: Sequence[object]) -> str:
    """A path inside the file as people read it: ``tests[3].metrics[0].type``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def schema_errors(instance: Any, schema: dict[str, Any], prefix: Sequence[object]) -> list[str]:
    """Every way *instance* breaks *schema*, one line each, starting with its path
    (*prefix* first)."""
    from jsonschema import Draft202012Validator

    problems = []
    for error in sorted(
        Draft202012Validator(schema).iter_errors(instance),
        key=lambda e: list(e.absolute_path).__str__(),
    ):
        where = format_path([*prefix, *error.absolute_path])
        problems.append(f"{where}: {_describe(error)}")
    return problems


def _describe(error: ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        return f"{error.message.split('(')[-1].rstrip(')')}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return f"{error.instance!r} is not allowed; use one of {choices}"
    return str(error.message)
