"""Metrics: verdicts on one test's answer.

Each metric returns ``{"type", "name", "passed", "reason"}`` with a one-line reason. A
test passes when all its metrics pass; with none, it passes when it executed.

=====================  ==============================================================
``contains``           the answer contains ``value`` (``case_sensitive``: default false)
``not_contains``       the answer does not contain ``value`` (same option)
``equals``             the answer equals ``value`` (strings compared stripped;
                       ``case_sensitive`` default true; other values as JSON)
``regex``              ``pattern`` matches somewhere in the answer (Python syntax)
``json_path_equals``   the first match of JSONPath ``path`` in the JSON response (HTTP)
                       or the returned value (python) equals ``value``
``max_latency_ms``     the request took at most ``value`` milliseconds
=====================  ==============================================================
"""

from __future__ import annotations

import json
import re
from typing import Any

from rhesis_pipeline.execution.attempt import Execution
from rhesis_pipeline.execution.json_path import compile_json_path


def _text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, default=str)


def _short(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= n else flat[:n] + "…")


def evaluate_one(metric: dict[str, Any], execution: Execution) -> dict[str, Any]:
    kind = metric["type"]
    name = metric.get("name") or kind
    answer = execution.output
    text = _text(answer)
    passed: bool
    if kind in ("contains", "not_contains"):
        value = metric["value"]
        sensitive = metric.get("case_sensitive", False)
        found = (value in text) if sensitive else (value.lower() in text.lower())
        passed = found if kind == "contains" else not found
        verb = "contains" if found else "does not contain"
        reason = (
            f"answer {verb} {value!r}" if passed else f"answer {verb} {value!r}: {_short(text)}"
        )
    elif kind == "equals":
        expected = metric["value"]
        if isinstance(expected, str):
            got = text.strip()
            want = expected.strip()
            if not metric.get("case_sensitive", True):
                got, want = got.lower(), want.lower()
            passed = got == want
        else:
            passed = answer == expected
        reason = (
            "answer equals the expected value"
            if passed
            else (f"expected {_short(_text(expected))}, got {_short(text)}")
        )
    elif kind == "regex":
        match = re.search(metric["pattern"], text)
        passed = match is not None
        reason = (
            f"/{metric['pattern']}/ matches {match.group(0)!r}"
            if match
            else f"/{metric['pattern']}/ does not match {_short(text)}"
        )
    elif kind == "json_path_equals":
        document = execution.document
        matches = compile_json_path(metric["path"]).find(document) if document is not None else []
        if not matches:
            passed = False
            reason = f"{metric['path']} matched nothing"
        else:
            got_value = matches[0].value
            passed = got_value == metric["value"]
            reason = (
                f"{metric['path']} = {_short(_text(got_value))}"
                if passed
                else f"{metric['path']} is {_short(_text(got_value))}, expected "
                f"{_short(_text(metric['value']))}"
            )
    elif kind == "max_latency_ms":
        limit = metric["value"]
        passed = execution.duration_ms <= limit
        reason = f"latency {execution.duration_ms:.0f} ms {'<=' if passed else '>'} {limit:g} ms"
    else:  # validated away; be explicit rather than pass silently
        passed, reason = False, f"unknown metric type {kind!r}"
    return {"type": kind, "name": name, "passed": passed, "reason": reason}


def evaluate(
    metrics: list[dict[str, Any]] | None, execution: Execution
) -> tuple[bool, list[dict[str, Any]]]:
    """(passed, verdicts) for a test's metrics on its execution."""
    verdicts = [evaluate_one(m, execution) for m in (metrics or [])]
    return all(v["passed"] for v in verdicts), verdicts


def outcome(test: dict[str, Any], execution: Execution) -> tuple[str, dict[str, Any]]:
    """The status of an execution once the test's metrics judged it, and the outcome's
    fields (error, output, metrics, duration_ms): one place for the threads and the loop."""
    status, verdicts = execution.status, execution.metrics
    if test.get("metrics"):
        passed, verdicts = evaluate(test["metrics"], execution)
        if not passed:
            status = "failed"
    return status, {
        "error": execution.reason if status == "failed" else None,
        "output": execution.output,
        "metrics": verdicts,
        "duration_ms": execution.duration_ms,
    }
