"""Asynchronous metrics (an LLM judge) on the worker's event loop, through the endpoint
limits that every worker shares.

A metric's call to its endpoint waits for a slot (and a token) of that endpoint's key in
the process's :class:`~rhesis_pipeline.worker.endpoint_limits.Budget`, exactly as a test's
HTTP request does, so a judge's ``max_concurrency`` and ``requests_per_minute`` hold across
every worker on every host. A 429 from it pauses the key for everyone and the call is made
again once the pause is over, not counted as an attempt; after ``RHESIS_RATE_LIMITED_MAX_S``
of such pauses the test ends as ``error`` ("rate limited by …"), as a test's own 429s do.

A test that ran on a worker thread (a python target) and has such a metric hands its
metric evaluation to the loop (:func:`outcome_on_loop`) and waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rhesis_pipeline.execution import metrics
from rhesis_pipeline.execution.attempt import (
    Execution,
    ExecutionError,
    RateLimited,
    RetryableExecutionError,
)
from rhesis_pipeline.execution.metrics import MetricError
from rhesis_pipeline.worker.endpoint_limits import Budget, limit_for

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


class InFlight(Protocol):
    """What metrics use of :class:`rhesis_pipeline.worker.inflight.InFlight`."""

    session: Any
    budget: Budget | None
    default_max_concurrency: int
    rate_limited_max_s: float

    def start_loop(self) -> asyncio.AbstractEventLoop: ...


class LoopCalls:
    """The :class:`~rhesis_pipeline.execution.metrics.MetricCalls` of an InFlight loop:
    its session, its endpoint budget."""

    def __init__(self, inflight: InFlight) -> None:
        self._inflight = inflight

    @property
    def session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self._inflight.session
        return session

    async def limited(self, endpoint: Mapping[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        budget = self._inflight.budget
        assert budget is not None
        limit = limit_for(endpoint, self._inflight.default_max_concurrency)
        loop = asyncio.get_running_loop()
        paused_for = 0.0
        while True:
            await budget.acquire(limit)
            sent = loop.time()
            try:
                result = await call()
            except RateLimited as exc:
                budget.release(limit.key, throttled_for_s=exc.retry_after_s)
                paused_for += exc.retry_after_s
                if paused_for > self._inflight.rate_limited_max_s:
                    raise MetricError(
                        f"rate limited by {limit.key} for {paused_for:.0f} s: {exc}"
                    ) from None
                continue  # put back: the budget waits out the pause; not an attempt
            except ExecutionError:  # an answer that is not a 429
                budget.release(limit.key, succeeded=True, latency_s=loop.time() - sent)
                raise
            except BaseException:
                budget.release(limit.key)
                raise
            budget.release(limit.key, succeeded=True, latency_s=loop.time() - sent)
            return result


async def judged(
    test: Mapping[str, Any], execution: Execution, inflight: InFlight, time_limit_s: float
) -> tuple[str, dict[str, Any]]:
    """The outcome of *test*'s *execution* once its metrics judged it on *inflight*'s loop
    (:func:`rhesis_pipeline.execution.metrics.outcome_async`), within *time_limit_s*
    seconds (the test's time limit, again: waiting for a judge's budget included)."""
    if not test.get("metrics"):
        return metrics.outcome(test, execution)
    try:
        return await asyncio.wait_for(
            metrics.outcome_async(test, execution, LoopCalls(inflight)), time_limit_s
        )
    except asyncio.TimeoutError:
        raise RetryableExecutionError(
            f"the test's metrics took longer than its time limit ({time_limit_s:g}s)"
        ) from None


def outcome_on_loop(
    test: Mapping[str, Any], execution: Execution, runner: InFlight | None, *, deadline: float
) -> tuple[str, dict[str, Any]]:
    """:func:`rhesis_pipeline.execution.metrics.outcome` for a test that ran on this worker
    thread, its metrics evaluated on *runner*'s event loop (its session and endpoint
    limits), this thread waiting until ``time.monotonic()`` reaches *deadline* at most;
    without a runner (``RHESIS_INFLIGHT_PER_PROCESS=0``) on this thread, unlimited."""
    if runner is None:
        return metrics.outcome(test, execution)
    loop = runner.start_loop()
    future = asyncio.run_coroutine_threadsafe(
        metrics.outcome_async(test, execution, LoopCalls(runner)), loop
    )
    try:
        return future.result(max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        future.cancel()
        raise RetryableExecutionError(
            "the test's metrics took longer than its time limit"
        ) from None
