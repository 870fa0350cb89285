"""Asynchronous metric types: how a type that awaits (an LLM judge) is validated and
evaluated. A type is one :class:`AsyncMetric` in :data:`ASYNC_METRICS`; evaluation
(:mod:`.evaluate`) awaits it on the worker's event loop with the loop's
:class:`~.calls.MetricCalls`.

``llm_judge`` is registered here. Its implementation is
:mod:`rhesis_pipeline.execution.judge` (``validate_judge``, ``judge``), imported when the
metric is first used so that this module does not depend on it being installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.execution.attempt import InvalidExecutor
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


def _judge_module() -> Any:
    try:
        return importlib.import_module("rhesis_pipeline.execution.judge")
    except ImportError as exc:
        raise InvalidExecutor(
            f"metric type 'llm_judge' needs rhesis_pipeline.execution.judge ({exc})"
        ) from None


def _validate_llm_judge(metric: Mapping[str, Any]) -> dict[str, Any]:
    validated: dict[str, Any] = _judge_module().validate_judge(metric)
    return validated


async def _evaluate_llm_judge(
    metric: dict[str, Any], given: MetricInput, calls: MetricCalls
) -> Judged:
    judge = _judge_module()

    async def ask() -> Any:
        return await judge.judge(
            metric, test=given.test, answer=given.answer, session=calls.session
        )

    # The judge's budget key: its endpoint's origin, or its limit_key (judge_limit_spec).
    limits = getattr(judge, "judge_limit_spec", lambda m: m["endpoint"])(metric)
    verdict = await calls.limited(limits, ask)
    score = None if verdict.score is None else float(verdict.score)
    threshold = getattr(verdict, "threshold", None)
    return Judged(passed=bool(verdict.passed), score=score, reason=str(verdict.reason),
                  threshold=None if threshold is None else float(threshold))  # fmt: skip


#: The asynchronous metric types by name.
ASYNC_METRICS: dict[str, AsyncMetric] = {
    "llm_judge": AsyncMetric(validate=_validate_llm_judge, evaluate=_evaluate_llm_judge),
}


def register(type_: str, metric: AsyncMetric) -> None:
    """Add (or replace) asynchronous metric type *type_*."""
    ASYNC_METRICS[type_] = metric
