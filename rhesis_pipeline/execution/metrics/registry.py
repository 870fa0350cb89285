"""Asynchronous metric types: how a type that awaits (an LLM judge) is validated and
evaluated. A type is one :class:`AsyncMetric` in :data:`ASYNC_METRICS`; evaluation
(:mod:`.evaluate`) awaits it on the worker's event loop with the loop's
:class:`~.calls.MetricCalls`.

``llm_judge`` is registered here. Its implementation is
:mod:`rhesis_pipeline.execution.judge` (``judge``: the call and its strict reading) and
:mod:`rhesis_pipeline.execution.judge_spec` (``validate_judge``, ``judge_limit_spec``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.execution.judge import JudgeVerdict, judge
from rhesis_pipeline.execution.judge_spec import judge_limit_spec, validate_judge
from rhesis_pipeline.execution.metrics.calls import MetricCalls
from rhesis_pipeline.execution.metrics.python_metric import MetricInput


@dataclass(frozen=True)
class Judged:
    """What an asynchronous metric concluded: its verdict, its score in [0, 1] (None: it
    gives none) and a one-line reason."""

    passed: bool
    score: float | None
    reason: str
    #: The threshold the metric applied itself (a default of its own), if any.
    threshold: float | None = None


@dataclass(frozen=True)
class AsyncMetric:
    """One asynchronous metric type."""

    #: The normalised metric (defaults filled in), or an InvalidSubmission whose
    #: one-line message names the key and the fix.
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: Awaited with the metric, the MetricInput and the loop's MetricCalls. Raises
    #: RetryableExecutionError (the attempt is retried), PermanentExecutionError (the
    #: test's error) or RateLimited (handled by MetricCalls.limited).
    evaluate: Callable[[dict[str, Any], MetricInput, MetricCalls], Awaitable[Judged]]


def _validate_llm_judge(metric: Mapping[str, Any]) -> dict[str, Any]:
    return validate_judge(metric)


async def _evaluate_llm_judge(
    metric: dict[str, Any], given: MetricInput, calls: MetricCalls
) -> Judged:
    async def ask() -> JudgeVerdict:
        return await judge(metric, test=given.test, answer=given.answer, session=calls.session)

    # The judge's budget key: its endpoint's origin, or its limit_key (judge_limit_spec).
    verdict = await calls.limited(judge_limit_spec(metric), ask)
    return Judged(
        passed=verdict.passed,
        score=verdict.score,
        reason=verdict.reason,
        threshold=verdict.threshold,
    )


#: The asynchronous metric types by name.
ASYNC_METRICS: dict[str, AsyncMetric] = {
    "llm_judge": AsyncMetric(validate=_validate_llm_judge, evaluate=_evaluate_llm_judge),
}


def register(type_: str, metric: AsyncMetric) -> None:
    """Add (or replace) asynchronous metric type *type_*."""
    ASYNC_METRICS[type_] = metric
