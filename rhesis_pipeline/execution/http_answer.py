"""What an HTTP endpoint's answer means, the same for the threaded and the asyncio client.

* 2xx: the test ran. The answer is the value at ``response_path`` (JSONPath) in a JSON
  response, or the whole body; a ``response_path`` that matches nothing, or a body that
  is not JSON, ends the test as ``error`` (not retried).
* 429, or 503 with a ``Retry-After``: :class:`RateLimited`, with how long the endpoint
  asked everyone to wait (:func:`retry_after_s`): the attempt is put back, not counted.
* another 5xx: retried with the run's backoff.
* another 4xx: not retried; the test ends as ``error`` with the status and a short
  excerpt of the body.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from rhesis_pipeline.execution.attempt import (
    Execution,
    PermanentExecutionError,
    RateLimited,
    RetryableExecutionError,
)
from rhesis_pipeline.execution.json_path import compile_json_path

#: Characters of a response body quoted in an error.
EXCERPT = 200
#: Seconds a 429 without any Retry-After header pauses its endpoint.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest pause a Retry-After header may ask for, in seconds (a bad header must not stop
#: a run).
MAX_RETRY_AFTER_S = 300.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def excerpt(text: str) -> str:
    """*text* on one line, cut to EXCERPT characters, to quote a body in an error."""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT] + "…"


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long an answer asks its client to wait, in seconds, or None if it does not say:
    ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date), or, when a
    ``x-ratelimit-remaining-*`` header is 0, its ``x-ratelimit-reset-*`` (``1s``,
    ``6m0s``, ``20ms``). Capped at MAX_RETRY_AFTER_S."""
    lower = {k.lower(): v for k, v in headers.items()}
    found: float | None = None
    try:
        if "retry-after-ms" in lower:
            found = float(lower["retry-after-ms"]) / 1000
        elif "retry-after" in lower:
            value = lower["retry-after"].strip()
            try:
                found = float(value)
            except ValueError:
                from email.utils import parsedate_to_datetime

                found = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        for name, value in lower.items():
            if name.startswith("x-ratelimit-remaining-") and value.strip() == "0":
                reset = lower.get(name.replace("remaining", "reset"), "")
                parts = _DURATION_PART.findall(reset)
                unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
                seconds = sum(float(n) * unit[u] for n, u in parts)
                if parts:
                    found = max(found or 0.0, seconds)
    if found is None:
        return None
    return min(max(found, 0.0), MAX_RETRY_AFTER_S)


def http_execution(
    spec: Mapping[str, Any],
    code: int,
    reason: str,
    text: str,
    headers: Mapping[str, str],
    latency_ms: float,
) -> Execution:
    """The Execution of an answer with status *code* and body *text* that took
    *latency_ms* milliseconds, or the ExecutionError it is (see module docstring)."""
    if code == 429 or (code == 503 and retry_after_s(headers) is not None):
        wait = retry_after_s(headers)
        raise RateLimited(
            f"HTTP {code} {reason}: {excerpt(text)}",
            DEFAULT_RETRY_AFTER_S if wait is None else wait,
        )
    if code >= 500:
        raise RetryableExecutionError(f"HTTP {code} {reason}: {excerpt(text)}")
    if code >= 400:
        raise PermanentExecutionError(f"HTTP {code} {reason}: {excerpt(text)}")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    answer: Any = text if document is None else document
    path = spec.get("response_path")
    if path:
        if document is None:
            raise PermanentExecutionError(
                f"response_path {path!r} needs a JSON response; got: {excerpt(text)}"
            )
        matches = compile_json_path(path).find(document)
        if not matches:
            raise PermanentExecutionError(
                f"response_path {path!r} matched nothing in the response: {excerpt(text)}"
            )
        answer = matches[0].value
    return Execution(
        "passed", output=answer, duration_ms=latency_ms, document=document, http_status=code
    )
