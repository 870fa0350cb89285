"""Checking a test's metrics when its run is submitted, before anything is stored.

What the suite schema cannot say, and what a run submitted through the Python API
(:func:`rhesis_pipeline.launch_test_run`, which has no schema) must not get past: a
``threshold`` that is not a number in [0, 1], a python metric whose ``target`` is not
``module:function`` or cannot be imported here, an asynchronous metric (``llm_judge``)
its own validation refuses. Each problem is one line naming the metric's path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.execution.attempt import InvalidExecutor
from rhesis_pipeline.execution.metrics.registry import ASYNC_METRICS
from rhesis_pipeline.execution.python_target import TARGET, resolve_target
from rhesis_pipeline.execution.values import short_repr


def metric_problems(metric: Mapping[str, Any], where: str) -> list[str]:
    """What is wrong with *metric* (at path *where*, ``tests[3].metrics[0]``), one line
    each; an empty list when nothing is."""
    problems: list[str] = []
    if "threshold" in metric:
        threshold = metric["threshold"]
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not (math.isfinite(threshold) and 0 <= threshold <= 1)
        ):
            problems.append(
                f"{where}.threshold: {short_repr(threshold)} is not a number in [0, 1]; "
                "write a score between 0 and 1, such as 0.7"
            )
    kind = metric.get("type")
    if kind == "python":
        target = metric.get("target")
        if not isinstance(target, str) or not TARGET.match(target):
            problems.append(f"{where}.target: {short_repr(target)} must be 'module.path:function'")
        else:
            try:
                resolve_target(target)
            except InvalidExecutor as exc:
                problems.append(f"{where}.target: {str(exc).removeprefix('executor.target ')}")
    elif isinstance(kind, str) and kind in ASYNC_METRICS and not problems:
        try:
            ASYNC_METRICS[kind].validate(metric)
        except InvalidSubmission as exc:
            # A judge's error names the key inside the metric (endpoint.url): one path.
            key, problem = getattr(exc, "key", None), getattr(exc, "problem", None)
            problems.append(f"{where}.{key}: {problem}" if key and problem else f"{where}: {exc}")
    return problems


def check_test_metrics(metrics: Any, where: str) -> None:
    """Raise InvalidSubmission (the first problem, one line) if a submitted test's
    *metrics* (at path *where*, ``tests[3].metrics``) are not a list of metric mappings
    that :func:`metric_problems` accepts."""
    if metrics is None:
        return
    if not isinstance(metrics, list):
        raise InvalidSubmission(f"{where} must be a list of metrics, got {type(metrics).__name__}")
    for j, metric in enumerate(metrics):
        if not isinstance(metric, Mapping) or not isinstance(metric.get("type"), str):
            raise InvalidSubmission(
                f"{where}[{j}] must be a mapping with a type, such as {{type: contains, value: x}}"
            )
        problems = metric_problems(metric, f"{where}[{j}]")
        if problems:
            raise InvalidSubmission(problems[0])
