"""Metrics: verdicts and scores on one test's answer.

Each metric gives ``{"type", "name", "passed", "reason", "score", "threshold"}``: a
verdict, a one-line reason, a score in [0, 1] (None when it gives none) and the threshold
applied. A test passes when all its metrics pass; with none, it passes when it executed.

* built-in checks (:mod:`.builtin`): score 1.0 or 0.0 with their verdict;
* your own (:mod:`.python_metric`): ``{type: python, target: "pkg.module:function"}``,
  called with a :class:`MetricInput`;
* asynchronous types (:mod:`.registry`): ``llm_judge``, awaited on the worker's event
  loop through its endpoint limits (:mod:`.calls`).

Evaluation is :mod:`.evaluate`; the checks made at submission are :mod:`.validate`.
"""

from rhesis_pipeline.execution.metrics.builtin import BUILTIN_TYPES
from rhesis_pipeline.execution.metrics.calls import MetricCalls, UnlimitedCalls
from rhesis_pipeline.execution.metrics.evaluate import (
    evaluate,
    evaluate_async,
    evaluate_one,
    evaluate_one_async,
    is_async_metric,
    needs_loop,
    outcome,
    outcome_async,
)
from rhesis_pipeline.execution.metrics.python_metric import (
    DEFAULT_THRESHOLD,
    MetricError,
    MetricInput,
    MetricResponse,
)
from rhesis_pipeline.execution.metrics.registry import ASYNC_METRICS, AsyncMetric, Judged, register
from rhesis_pipeline.execution.metrics.validate import check_test_metrics, metric_problems

__all__ = [
    "ASYNC_METRICS",
    "BUILTIN_TYPES",
    "DEFAULT_THRESHOLD",
    "AsyncMetric",
    "Judged",
    "MetricCalls",
    "MetricError",
    "MetricInput",
    "MetricResponse",
    "UnlimitedCalls",
    "check_test_metrics",
    "evaluate",
    "evaluate_async",
    "evaluate_one",
    "evaluate_one_async",
    "is_async_metric",
    "metric_problems",
    "needs_loop",
    "outcome",
    "outcome_async",
    "register",
]
