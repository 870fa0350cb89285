"""The built-in checks: string and latency verdicts on one test's answer.

Each gives a verdict with a score of 1.0 (passed) or 0.0 (failed) and a one-line reason.

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

#: The built-in metric types, in the order the docs list them.
BUILTIN_TYPES = (
    "contains",
    "not_contains",
    "equals",
    "regex",
    "json_path_equals",
    "max_latency_ms",
)


def text_of(answer: Any) -> str:
    """The answer as text: itself if it is a string, else its JSON."""
    return answer if isinstance(answer, str) else json.dumps(answer, default=str)


def short(text: str, n: int = 60) -> str:
    """*text* on one line, cut to *n* characters, quoted, for a reason."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= n else flat[:n] + "…")


def check(metric: dict[str, Any], execution: Execution) -> tuple[bool, str]:
    """(passed, reason) of the built-in *metric* on *execution*."""
    kind = metric["type"]
    answer = execution.output
    text = text_of(answer)
    if kind in ("contains", "not_contains"):
        value = metric["value"]
        sensitive = metric.get("case_sensitive", False)
        found = (value in text) if sensitive else (value.lower() in text.lower())
        passed = found if kind == "contains" else not found
        verb = "contains" if found else "does not contain"
        return passed, (
            f"answer {verb} {value!r}" if passed else f"answer {verb} {value!r}: {short(text)}"
        )
    if kind == "equals":
        expected = metric["value"]
        if isinstance(expected, str):
            got, want = text.strip(), expected.strip()
            if not metric.get("case_sensitive", True):
                got, want = got.lower(), want.lower()
            passed = got == want
        else:
            passed = answer == expected
        return passed, (
            "answer equals the expected value"
            if passed
            else f"expected {short(text_of(expected))}, got {short(text)}"
        )
    if kind == "regex":
        match = re.search(metric["pattern"], text)
        if match:
            return True, f"/{metric['pattern']}/ matches {match.group(0)!r}"
        return False, f"/{metric['pattern']}/ does not match {short(text)}"
    if kind == "json_path_equals":
        document = execution.document
        matches = compile_json_path(metric["path"]).find(document) if document is not None else []
        if not matches:
            return False, f"{metric['path']} matched nothing"
        got_value = matches[0].value
        if got_value == metric["value"]:
            return True, f"{metric['path']} = {short(text_of(got_value))}"
        return False, (
            f"{metric['path']} is {short(text_of(got_value))}, expected "
            f"{short(text_of(metric['value']))}"
        )
    if kind == "max_latency_ms":
        limit = metric["value"]
        passed = execution.duration_ms <= limit
        return passed, (
            f"latency {execution.duration_ms:.0f} ms {'<=' if passed else '>'} {limit:g} ms"
        )
    # validated away; be explicit rather than pass silently
    return False, f"unknown metric type {kind!r}"
