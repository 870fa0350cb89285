"""Evaluating a test's metrics once its execution returned: on a worker thread
(:func:`outcome`) or on the worker's event loop (:func:`outcome_async`).

Every verdict is ``{"type", "name", "passed", "reason", "score", "threshold"}``: ``score``
a float in [0, 1] (None when the metric gives none), ``threshold`` the one applied (None
when the verdict decided alone). A metric with a ``threshold`` passes when its score is at
least that.

Built-in checks are evaluated inline. A plain python metric runs in a thread of the loop's
executor when on the loop (it must not stall hundreds of tests in flight), inline on a
worker thread; an ``async def`` one is awaited (``asyncio.run`` on a thread). The types
of :mod:`.registry` (``llm_judge``) are awaited with the loop's
:class:`~.calls.MetricCalls`: a thread hands the whole evaluation to the loop
(:func:`needs_loop` says when).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Mapping
from typing import Any

from dramatiq.errors import Retry

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.execution.attempt import Execution, InvalidExecutor, RetryableExecutionError
from rhesis_pipeline.execution.metrics import builtin
from rhesis_pipeline.execution.metrics.calls import MetricCalls, UnlimitedCalls
from rhesis_pipeline.execution.metrics.python_metric import (
    MetricError,
    metric_input,
    raised,
    verdict,
)
from rhesis_pipeline.execution.metrics.registry import ASYNC_METRICS
from rhesis_pipeline.execution.python_target import resolve_target

Verdict = dict[str, Any]


def _name(metric: Mapping[str, Any]) -> str:
    return str(metric.get("name") or metric["type"])


def _made(metric: Mapping[str, Any], passed: bool, reason: str, score: float | None,
          threshold: float | None) -> Verdict:  # fmt: skip
    return {"type": metric["type"], "name": _name(metric), "passed": passed, "reason": reason,
            "score": score, "threshold": threshold}  # fmt: skip


def _function(metric: Mapping[str, Any]) -> Any:
    try:
        return resolve_target(str(metric["target"]))
    except InvalidExecutor as exc:
        # Checked at submission, but this worker cannot import it.
        detail = str(exc).removeprefix("executor.target ")
        raise MetricError(f"metric {_name(metric)!r}: {detail}") from None


def _builtin(metric: Mapping[str, Any], execution: Execution) -> Verdict:
    passed, reason = builtin.check(dict(metric), execution)
    score = 1.0 if passed else 0.0
    threshold = metric.get("threshold")
    if threshold is not None:
        passed = score >= threshold
    return _made(metric, passed, reason, score, threshold)


def _python(metric: Mapping[str, Any], returned: Any) -> Verdict:
    passed, score, reason, applied = verdict(_name(metric), returned, metric.get("threshold"))
    return _made(metric, passed, reason, score, applied)


def is_async_metric(metric: Mapping[str, Any]) -> bool:
    """Whether *metric* awaits: a registered asynchronous type, or a python metric whose
    function is an ``async def``."""
    kind = metric.get("type")
    if kind in ASYNC_METRICS:
        return True
    if kind != "python":
        return False
    try:
        return inspect.iscoroutinefunction(resolve_target(str(metric.get("target"))))
    except InvalidExecutor:
        return False


def needs_loop(metrics: Any) -> bool:
    """Whether a test with *metrics* has one that a worker thread hands to the event
    loop (a registered asynchronous type, which needs the loop's session and limits)."""
    return isinstance(metrics, list) and any(
        isinstance(m, Mapping) and m.get("type") in ASYNC_METRICS for m in metrics
    )


def evaluate_one(
    metric: Mapping[str, Any], execution: Execution, test: Mapping[str, Any] | None = None
) -> Verdict:
    """The verdict of *metric* on *execution* of *test*, on this thread. Raises
    MetricError when the metric gives no verdict (the test's error)."""
    kind = metric["type"]
    if kind == "python":
        fn = _function(metric)
        try:
            returned = fn(metric_input(metric, test or {}, execution))
            if inspect.isawaitable(returned):
                returned = asyncio.run(_awaited(returned))
        except (Retry, DatabaseUnavailable):
            raise
        except Exception as exc:
            raise raised(_name(metric), exc) from exc
        return _python(metric, returned)
    if kind in ASYNC_METRICS:
        return asyncio.run(_standalone(metric, execution, test or {}))
    return _builtin(metric, execution)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _standalone(metric: Mapping[str, Any], execution: Execution,
                      test: Mapping[str, Any]) -> Verdict:  # fmt: skip
    calls = UnlimitedCalls()
    try:
        return await evaluate_one_async(metric, execution, test, calls)
    finally:
        await calls.close()


async def evaluate_one_async(
    metric: Mapping[str, Any],
    execution: Execution,
    test: Mapping[str, Any],
    calls: MetricCalls,
) -> Verdict:
    """:func:`evaluate_one` on the running event loop, with its *calls*."""
    kind = metric["type"]
    if kind == "python":
        fn = _function(metric)
        given = metric_input(metric, test, execution)
        try:
            if inspect.iscoroutinefunction(fn):
                returned = await fn(given)
            else:
                returned = await asyncio.to_thread(fn, given)
                if inspect.isawaitable(returned):
                    returned = await returned
        except (Retry, DatabaseUnavailable, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise raised(_name(metric), exc) from exc
        return _python(metric, returned)
    if kind in ASYNC_METRICS:
        spec = dict(metric)
        try:
            judged = await ASYNC_METRICS[kind].evaluate(spec, metric_input(spec, test, execution),
                                                        calls)  # fmt: skip
        except (RetryableExecutionError, MetricError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug in the metric: the test's error, named
            raise raised(_name(metric), exc) from exc
        threshold = metric.get("threshold", judged.threshold)
        passed = judged.passed
        if threshold is not None and judged.score is not None:
            passed = judged.score >= threshold
        return _made(metric, passed, judged.reason, judged.score, threshold)
    return _builtin(metric, execution)


def evaluate(
    metrics: list[dict[str, Any]] | None,
    execution: Execution,
    test: Mapping[str, Any] | None = None,
) -> tuple[bool, list[Verdict]]:
    """(passed, verdicts) for a test's metrics on its execution, on this thread."""
    verdicts = [evaluate_one(m, execution, test) for m in (metrics or [])]
    return all(v["passed"] for v in verdicts), verdicts


async def evaluate_async(
    metrics: list[dict[str, Any]] | None,
    execution: Execution,
    test: Mapping[str, Any],
    calls: MetricCalls,
) -> tuple[bool, list[Verdict]]:
    """:func:`evaluate` on the running event loop, the metrics one after the other."""
    verdicts = [await evaluate_one_async(m, execution, test, calls) for m in (metrics or [])]
    return all(v["passed"] for v in verdicts), verdicts


def _fields(test: Mapping[str, Any], execution: Execution, passed: bool,
            verdicts: Any) -> tuple[str, dict[str, Any]]:  # fmt: skip
    status = execution.status
    if test.get("metrics") and not passed:
        status = "failed"
    return status, {
        "error": execution.reason if status == "failed" else None,
        "output": execution.output,
        "metrics": verdicts,
        "duration_ms": execution.duration_ms,
    }


def outcome(test: Mapping[str, Any], execution: Execution) -> tuple[str, dict[str, Any]]:
    """The status of an execution once the test's metrics judged it, and the outcome's
    fields (error, output, metrics, duration_ms). Raises MetricError (the test's error)
    when a metric gives no verdict."""
    if not test.get("metrics"):
        return _fields(test, execution, True, execution.metrics)
    passed, verdicts = evaluate(test["metrics"], execution, test)
    return _fields(test, execution, passed, verdicts)


async def outcome_async(
    test: Mapping[str, Any], execution: Execution, calls: MetricCalls
) -> tuple[str, dict[str, Any]]:
    """:func:`outcome` on the running event loop, with its *calls*."""
    if not test.get("metrics"):
        return _fields(test, execution, True, execution.metrics)
    passed, verdicts = await evaluate_async(test["metrics"], execution, test, calls)
    return _fields(test, execution, passed, verdicts)
