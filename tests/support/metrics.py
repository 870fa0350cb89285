"""Python metrics (and one asynchronous metric type) used by tests; imported by test
workers started with ``modules=METRIC_MODULES``."""

from __future__ import annotations

import asyncio
import math

from rhesis_pipeline.execution.attempt import RateLimited, RetryableExecutionError
from rhesis_pipeline.execution.http_answer import retry_after_s
from rhesis_pipeline.execution.metrics import AsyncMetric, Judged, MetricInput, register

from .workers import DEFAULT_MODULES

METRIC_MODULES = (*DEFAULT_MODULES, "tests.support.metrics")


def is_long(given: MetricInput) -> bool:
    """A bool: the answer has at least params["min_chars"] characters."""
    return len(str(given.answer)) >= given.params.get("min_chars", 5)


def length_score(given: MetricInput) -> float:
    """A score: the answer's length over params["full"] characters, at most 1."""
    return min(1.0, len(str(given.answer)) / given.params["full"])


def graded(given: MetricInput) -> dict:
    """A mapping: score from the test's "grade", with a reason that quotes the response."""
    grade = given.test.get("grade", 1.0)
    return {
        "score": grade,
        "reason": f"graded {grade} (latency {given.response.latency_ms >= 0}, "
        f"status {given.response.status})",
    }


async def async_grade(given: MetricInput) -> dict:
    """An async def metric: awaits, then passes with the test's "grade" as its score."""
    await asyncio.sleep(0.01)
    return {"passed": True, "score": given.test.get("grade", 0.25), "reason": "async"}


def broken(given: MetricInput) -> bool:
    raise ValueError("the metric's own bug")


def returns_param(given: MetricInput):
    """Returns params["value"] (a string, NaN, 1.5 …)."""
    value = given.params["value"]
    return math.nan if value == "nan" else value


# -- an asynchronous metric type calling an HTTP endpoint through the endpoint limits ------


async def _probe(metric: dict, given: MetricInput, calls) -> Judged:
    """POST the answer to metric["endpoint"]["url"] (benchmarks.endpoint.SlowEndpoint): 200
    is a score of 1, 429 is RateLimited (through the endpoint limits), 5xx retried."""

    async def ask() -> Judged:
        async with calls.session.post(
            metric["endpoint"]["url"], json={"prompt": str(given.answer)}
        ) as response:
            if response.status == 429:
                raise RateLimited("HTTP 429", retry_after_s(response.headers) or 1.0)
            if response.status >= 500:
                raise RetryableExecutionError(f"HTTP {response.status}")
            return Judged(passed=True, score=1.0, reason=(await response.json())["answer"])

    return await calls.limited(metric["endpoint"], ask)


register("probe", AsyncMetric(validate=dict, evaluate=_probe))


async def async_echo(test: dict) -> str:
    """An ``async def`` target (its tests run on the worker's event loop): the prompt."""
    await asyncio.sleep(0.001)
    return str(test.get("prompt"))
