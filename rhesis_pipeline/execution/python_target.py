"""The python executor: ``{"type": "python", "target": "module:function"}``.

Calls ``function(test)`` with the test mapping; the function must be importable by the
workers. It may return a mapping with any of ``passed`` (true or false), ``output``,
``metrics``; a bool (passed or failed); or anything else, which is the output (passed).
``None`` is a failure ("the target returned None"), as in the old system; a ``passed``
that is not a boolean ends the test as ``error`` (not retried). An exception fails the
attempt, which is retried (one warning line, no traceback). A target the worker cannot
import ends the test as ``error`` at once (not retried), with the reason.

An ``async def`` target runs on the worker's event loop (:func:`execute_python_async`)
beside hundreds of others; a plain one runs on a worker thread (:func:`execute_python`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import Any

from dramatiq.errors import Retry

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.execution.attempt import (
    Execution,
    InvalidExecutor,
    PermanentExecutionError,
    TargetRaised,
)
from rhesis_pipeline.execution.values import short_repr

#: ``module.path:function.attribute``: what a target may name.
TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def validate_python_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """*spec* (``type`` is "python") if its target is well formed and importable here;
    raises InvalidExecutor naming the problem before anything is stored."""
    unknown = sorted(set(spec) - {"type", "target"})
    if unknown:
        raise InvalidExecutor(
            f"executor: unknown key(s) {', '.join(unknown)}; allowed: type, target"
        )
    target = spec.get("target")
    if not isinstance(target, str) or not TARGET.match(target):
        raise InvalidExecutor(f"executor.target {target!r} must be 'module.path:function'")
    resolve_target(target)  # importable here, or a clear error before anything is stored
    return spec


@lru_cache(maxsize=256)
def resolve_target(target: str) -> Callable[..., Any]:
    """The callable that *target* ("module:function.attr") names, imported once per
    process; raises InvalidExecutor saying why it cannot be had."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InvalidExecutor(
            f"executor.target {target!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); it must be importable by the workers"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InvalidExecutor(
                f"executor.target {target!r}: module {module_name!r} has no attribute {attr!r}"
            )
    if not callable(obj):
        raise InvalidExecutor(f"executor.target {target!r} is not callable")
    found: Callable[..., Any] = obj
    return found


def is_async_target(target: str) -> bool:
    """Whether *target* is an ``async def`` (False when this process cannot import it:
    the attempt then runs on a thread, which stores the reason)."""
    try:
        return inspect.iscoroutinefunction(resolve_target(target))
    except InvalidExecutor:
        return False


def execute_python(spec: Mapping[str, Any], test: Mapping[str, Any]) -> Execution:
    """Call the target of *spec* with *test* on this thread. Raises PermanentExecutionError
    if this worker cannot import it, TargetRaised if it raised."""
    try:
        fn = resolve_target(spec["target"])
    except InvalidExecutor as exc:
        # Checked when the run was submitted, but this worker cannot import it (another
        # directory, a missing dependency): every attempt here would fail the same way.
        raise PermanentExecutionError(str(exc)) from None
    started = time.perf_counter()
    try:
        value = fn(dict(test))
        if inspect.isawaitable(value):  # an async def target on a thread (careful path)
            value = asyncio.run(_awaited(value))
    except (Retry, DatabaseUnavailable):
        # The target asks for a retry itself (dramatiq.Retry), or the pipeline's database
        # is down (RhesisRetries releases the message without counting an attempt).
        raise
    except Exception as exc:
        raise TargetRaised(exc) from exc
    duration_ms = (time.perf_counter() - started) * 1000
    return interpret(value, duration_ms)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def execute_python_async(spec: Mapping[str, Any], test: Mapping[str, Any]) -> Execution:
    """Await the ``async def`` target of *spec* with *test* on the running event loop."""
    fn = resolve_target(spec["target"])
    started = time.perf_counter()
    try:
        value = await fn(dict(test))
    except (Retry, DatabaseUnavailable):
        raise
    except Exception as exc:
        raise TargetRaised(exc) from exc
    return interpret(value, (time.perf_counter() - started) * 1000)


def interpret(value: Any, duration_ms: float = 0.0) -> Execution:
    """Turn a python target's return value into an Execution (see module docstring);
    *duration_ms* is how long the call took, in milliseconds."""
    if value is None:
        return Execution("failed", duration_ms=duration_ms, reason="the target returned None")
    if isinstance(value, bool):
        return Execution(
            "passed" if value else "failed",
            duration_ms=duration_ms,
            reason=None if value else "the target returned False",
        )
    if isinstance(value, Mapping) and ({"passed", "output", "metrics"} & set(value)):
        passed = value.get("passed", True)
        if not isinstance(passed, bool):
            raise PermanentExecutionError(
                f"the target returned passed={short_repr(passed)}: passed must be true or false"
            )
        metrics = value.get("metrics")
        output = value.get("output")
        return Execution(
            "passed" if passed else "failed",
            output=output,
            metrics=dict(metrics) if isinstance(metrics, Mapping) else metrics,
            duration_ms=duration_ms,
            document=output,
            reason=None if passed else "the target returned passed=false",
        )
    return Execution("passed", output=value, duration_ms=duration_ms, document=value)
