"""Executors: how one test is run, chosen by the run's executor spec.

The spec is stored on the run (``test_runs.executor``) and applied by
``execute_single_test`` to each test. Two kinds, one module each:

``{"type": "python", "target": "module:function"}`` (or just ``"module:function"``)
    :mod:`rhesis_pipeline.execution.python_target`: calls ``function(test)``.

``{"type": "http", "url", "method", "headers", "body", "response_path", "timeout_s"}``
    :mod:`rhesis_pipeline.execution.http_endpoint`: sends one request per test;
    :mod:`rhesis_pipeline.execution.http_answer` says what its answer means.

This module validates a spec (:func:`validate_executor`, when a run is submitted) and
runs an attempt on a worker thread (:func:`execute`) or on the worker's event loop
(:func:`execute_async`, for specs where :func:`runs_async` is true). An attempt returns an
:class:`~rhesis_pipeline.execution.attempt.Execution` or raises one of the
:mod:`~rhesis_pipeline.execution.attempt` errors, which say whether it is retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.execution.attempt import Execution, InvalidExecutor
from rhesis_pipeline.execution.http_endpoint import (
    execute_http,
    execute_http_async,
    validate_http_spec,
)
from rhesis_pipeline.execution.python_target import (
    execute_python,
    execute_python_async,
    is_async_target,
    validate_python_spec,
)

if TYPE_CHECKING:
    import aiohttp


def validate_executor(executor: str | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise and check an executor spec; raises InvalidExecutor naming the problem."""
    if isinstance(executor, str):
        spec: dict[str, Any] = {"type": "python", "target": executor}
    elif isinstance(executor, Mapping):
        spec = dict(executor)
    else:
        raise InvalidExecutor(
            f"executor must be 'module:function' or a mapping, got {type(executor).__name__}"
        )
    kind = spec.get("type")
    if kind == "python":
        return validate_python_spec(spec)
    if kind == "http":
        return validate_http_spec(spec)
    raise InvalidExecutor(f"executor.type {kind!r} is not supported; use 'python' or 'http'")


def execute(
    spec: Mapping[str, Any], test: Mapping[str, Any], *, deadline: float | None = None
) -> Execution:
    """Run *test* through the executor *spec*. Exceptions propagate (the attempt failed).

    deadline: ``time.monotonic()`` value at which the attempt's time limit runs out. An
    HTTP request never waits past it, whatever its own ``timeout_s``: dramatiq's time
    limit is an asynchronous exception, which cannot interrupt a thread blocked in a
    socket read. (A python target is interrupted by the time limit between bytecodes.)
    """
    if spec.get("type") == "http":
        return execute_http(spec, test, deadline=deadline)
    return execute_python(spec, test)


def runs_async(spec: Mapping[str, Any]) -> bool:
    """Whether *spec* is I/O-bound and runs on the worker's event loop: HTTP, or a python
    target that is an ``async def`` (one the worker cannot import runs on a thread,
    which stores the reason)."""
    if spec.get("type") == "http":
        return True
    target = spec.get("target")
    return isinstance(target, str) and is_async_target(target)


async def execute_async(
    spec: Mapping[str, Any], test: Mapping[str, Any], session: aiohttp.ClientSession
) -> Execution:
    """:func:`execute` on an event loop; *session* is the loop's ``aiohttp.ClientSession``.
    The caller bounds the attempt by its time limit (cancellation)."""
    if spec.get("type") == "http":
        return await execute_http_async(spec, test, session)
    return await execute_python_async(spec, test)
