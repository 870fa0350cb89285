"""Hundreds of tests in flight per worker process: an event loop for I/O-bound members.

A dramatiq worker thread runs ``execute_single_test``. A member whose executor is
I/O-bound (HTTP, or an ``async def`` python target) and whose test came with its claim
(the fast path) is handed to this process's event loop, and the thread returns at once:
it is free for the next message while the request is in flight. The message stays held
by the consumer (``Delivery.settled_by_writer``) until its outcome commits, so what the process
holds stays bounded (the members' consumer makes room for ``RHESIS_INFLIGHT_PER_PROCESS``
of them besides its threads' prefetch) and nothing changes for the rest of the system:

* each test is still one message, claimed under a fencing token, its outcome stored once
  by the outcome writer (and its message deleted in the same transaction);
* **attempts** are retried here, under the same claim, with the run's backoff; a
  rate-limited attempt (429) is put back without counting, for at most
  ``RHESIS_RATE_LIMITED_MAX_S`` in all, then the test is an error ("rate limited by …");
* the **time limit** applies to each attempt from the moment its request is sent
  (waiting for the endpoint's budget, :mod:`.endpoint_limits`, is not execution);
* **revocation** cancels the run's tasks at once (the consumer hears the revocation's
  NOTIFY: :func:`rhesis_pipeline.worker.cancellation.note_revoked` calls :meth:`cancel_run`);
* **rescue**: if the process dies, its claims are returned by the rescuer like any fast-path
  member's (uncounted; they run next on the careful path, on a thread);
* **no head-of-line blocking**: when the process is full (90 % of its capacity), a test
  whose endpoint would keep it waiting long (:meth:`.endpoint_limits.Budget.deferral`) is
  *deferred*: given back to its queue uncounted and out of reach for about as long as it
  would have waited here (at most 30 s), so that the process's capacity goes to other
  endpoints' and tenants' tests;
* **stopping**: :meth:`stop` waits up to the drain time for the tasks in flight, then
  cancels the rest, which stay claimed by the stopped worker and are returned by the
  rescuer, uncounted.

One thread runs the loop; one ``aiohttp.ClientSession`` (no connection cap of its own: the
endpoint limits and this process's capacity bound what is in flight) serves every HTTP
test. A coroutine costs a few kilobytes, where a thread per test held a database
connection and a stack.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from rhesis_pipeline.execution import executors
from rhesis_pipeline.execution.attempt import (
    Execution,
    ExecutionError,
    PermanentExecutionError,
    RateLimited,
    RetryableExecutionError,
)
from rhesis_pipeline.tracing.attempts import Attempt
from rhesis_pipeline.worker import cancellation
from rhesis_pipeline.worker.endpoint_limits import Budget, Deferred, EndpointLimit, limit_for
from rhesis_pipeline.worker.loop_job import Job
from rhesis_pipeline.worker.metric_calls import judged
from rhesis_pipeline.worker.shutdown import INFLIGHT_CANCEL_S

logger = logging.getLogger(__name__)


#: The share of its capacity a process holds when it is *full* (see InFlight.full).
FULL_SHARE = 0.9


class InFlight:
    """The process's event loop thread and what runs on it; see the module docstring."""

    def __init__(
        self,
        *,
        capacity: int,
        budget_factory: Callable[[Callable[[], bool]], Budget],
        rate_limited_max_s: float,
        default_max_concurrency: int = 64,
    ) -> None:
        self.capacity = capacity
        self.default_max_concurrency = default_max_concurrency
        self.rate_limited_max_s = rate_limited_max_s
        self._budget_factory = budget_factory
        self._lock = threading.Lock()
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._count = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.budget: Budget | None = None
        self.session: Any = None

    # -- from worker threads ---------------------------------------------------------

    def count(self) -> int:
        """Members handed over and not yet finished (in flight or waiting for budget)."""
        return self._count

    def full(self) -> bool:
        """Whether this process holds nearly all it may (its consumer claims nothing
        else): only then does a test that cannot start make others wait."""
        return self._count >= FULL_SHARE * self.capacity

    def submit(self, job: Job) -> None:
        """Run *job* on the loop; returns at once."""
        loop = self.start_loop()
        with self._lock:
            self._count += 1
        loop.call_soon_threadsafe(self._spawn, job)

    def runs(self) -> set[str]:
        """Runs this loop executes members of now (for the revocation check)."""
        return set(self._tasks.values())

    def cancel_run(self, run_id: str) -> None:
        """Cancel the tasks of revoked run *run_id* (they store ``cancelled``)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_run, str(run_id))

    def stop(self, grace_s: float) -> int:
        """Wait up to *grace_s* for the tasks in flight, cancel the rest, stop the loop.
        Returns how many were cancelled."""
        loop = self._loop
        if loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self._drain(grace_s), loop)
        try:
            cancelled = future.result(grace_s + 10)
        except concurrent.futures.TimeoutError:
            cancelled = self._count
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        return cancelled

    # -- the loop thread ---------------------------------------------------------------

    def start_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, its thread started on first use."""
        if self._loop is not None:
            return self._loop
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_loop, name="rhesis-inflight", daemon=True
                )
                self._thread.start()
        self._ready.wait()
        assert self._loop is not None
        return self._loop

    def _run_loop(self) -> None:
        import aiohttp

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def setup() -> None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self.session = aiohttp.ClientSession(connector=connector)
            self.budget = self._budget_factory(self.full)
            self.budget.start()

        loop.run_until_complete(setup())
        cancellation.register_executor(self.runs, self.cancel_run)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self.session is not None:
                loop.run_until_complete(self.session.close())
            loop.close()

    def _spawn(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(job))
        self._tasks[task] = job.run_id
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        with self._lock:
            self._count -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("in-flight task failed: %r", task.exception())

    def _cancel_run(self, run_id: str) -> None:
        for task, task_run in list(self._tasks.items()):
            if task_run == run_id:
                task.cancel()

    async def _drain(self, grace_s: float) -> int:
        pending = list(self._tasks)
        if pending:
            logger.info("waiting up to %.0fs for %d tests in flight", grace_s, len(pending))
            _, still = await asyncio.wait(pending, timeout=grace_s)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=INFLIGHT_CANCEL_S)
                logger.warning(
                    "stopped %d tests in flight after %.0fs; they run again elsewhere "
                    "(returned by the rescuer, no attempt counted)",
                    len(still),
                    grace_s,
                )
            return len(still)
        return 0

    # -- one member ----------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        attempt = job.attempts_before + 1
        limited_for = 0.0
        limit = (
            limit_for(job.executor, self.default_max_concurrency)
            if job.executor.get("type") == "http"
            else None
        )
        try:
            while True:
                with job.span(attempt) as span:
                    try:
                        execution = await self._attempt(job, limit, span)
                        status, fields = await judged(job.test, execution, self, job.time_limit_s)
                    except Deferred as deferred:
                        span.outcome("deferred", reason=f"endpoint busy {deferred.delay_s:.1f} s")
                        delay = deferred.delay_s * random.uniform(0.75, 1.25)
                        if job.defer is not None and await asyncio.get_running_loop(
                        ).run_in_executor(None, job.defer, delay):  # fmt: skip
                            return  # back in its queue; another claim runs it
                        job.defer = None  # it could not go back: it waits here
                        continue
                    except RateLimited as exc:
                        limited_for += exc.retry_after_s
                        if limited_for > self.rate_limited_max_s:
                            error = (f"rate limited by {limit.key if limit else 'the target'} "
                                     f"for {limited_for:.0f} s: {exc}")  # fmt: skip
                            span.outcome("error", reason=error)
                            job.store("error", error=error, attempts=attempt,
                                      started_at=job.started_at)  # fmt: skip
                            return
                        span.outcome("rate_limited", reason=str(exc))
                        continue  # put back: the budget waits out the pause; not an attempt
                    except RetryableExecutionError as exc:
                        if attempt > job.max_retries:
                            span.outcome("error", reason=str(exc))
                            job.store("error", error=str(exc)[:10_000], attempts=attempt,
                                      started_at=job.started_at)  # fmt: skip
                            logger.warning(
                                "test %s of run %s errored after %d attempt(s): %s",
                                job.test_id, job.run_id, attempt, exc, extra=job.log_context(),
                            )  # fmt: skip
                            return
                        span.outcome("retry", reason=str(exc))
                        logger.warning(
                            "test %s of run %s: attempt %d failed: %s",
                            job.test_id, job.run_id, attempt, exc, extra=job.log_context(),
                        )  # fmt: skip
                    except PermanentExecutionError as exc:
                        span.outcome("error", reason=str(exc))
                        job.store("error", error=str(exc)[:10_000], attempts=attempt,
                                  started_at=job.started_at)  # fmt: skip
                        return
                    else:
                        span.outcome(status, latency_ms=execution.duration_ms,
                                     reason=fields.get("error"),
                                     metrics=fields.get("metrics"))  # fmt: skip
                        job.store(status, attempts=attempt, started_at=job.started_at, **fields)
                        return
                await asyncio.sleep(self._backoff(job, attempt))  # a retry, after its backoff
                attempt += 1
        except asyncio.CancelledError:
            if cancellation.was_revoked(job.run_id):
                job.store("cancelled", error="run revoked while this test was executing")
                return
            raise  # stopping: the rescuer returns it
        except Exception as exc:  # a bug, or a target's exception we did not expect
            job.store("error", error=f"{type(exc).__name__}: {exc}"[:10_000], attempts=attempt,
                      started_at=job.started_at)  # fmt: skip

    async def _attempt(self, job: Job, limit: EndpointLimit | None, span: Attempt) -> Execution:
        budget = self.budget
        assert budget is not None
        if limit is not None:
            if job.defer is not None and self.full():
                delay = budget.deferral(limit)
                if delay is not None:
                    raise Deferred(delay)
            waiting_since = time.time_ns()
            await budget.acquire(limit, evictable=job.defer is not None)
            span.budget_waited(waiting_since, limit.key)
        succeeded, throttled = False, None
        sent = asyncio.get_running_loop().time()
        try:
            # The time limit starts when the request is sent.
            execution = await asyncio.wait_for(
                executors.execute_async(job.executor, job.test, self.session), job.time_limit_s
            )
            succeeded = True
            return execution
        except asyncio.TimeoutError:
            what = "no answer within the test's time limit" if limit else "time limit exceeded"
            raise RetryableExecutionError(
                f"{what} ({job.time_limit_s:g}s; it starts when the request is sent)"
            ) from None
        except RateLimited as exc:
            throttled = exc.retry_after_s
            raise
        except ExecutionError:
            succeeded = True  # an answer (or a failure) that is not a 429
            raise
        finally:
            if limit is not None:
                budget.release(
                    limit.key,
                    succeeded=succeeded,
                    throttled_for_s=throttled,
                    latency_s=asyncio.get_running_loop().time() - sent,
                )

    @staticmethod
    def _backoff(job: Job, attempt: int) -> float:
        """Seconds before the next attempt: exponential from min_backoff, jittered."""
        step = min(job.max_backoff_ms, job.min_backoff_ms * 2 ** (attempt - 1))
        return random.uniform(step / 2, step) / 1000


_runner: InFlight | None = None
_runner_lock = threading.Lock()


def runner() -> InFlight:
    """The process's InFlight, made on first use from the settings."""
    global _runner
    with _runner_lock:
        if _runner is None:
            from rhesis_pipeline.identity import worker_id
            from rhesis_pipeline.storage import engine, statements

            settings = engine.settings()

            def budget(full: Callable[[], bool]) -> Budget:
                return Budget(
                    full=full,
                    worker=worker_id(),
                    exchange=lambda params: statements.run_prepared("endpoint_exchange", params),
                    lease_timeout_s=settings.heartbeat_timeout_s,
                )

            _runner = InFlight(
                capacity=settings.inflight_per_process,
                budget_factory=budget,
                rate_limited_max_s=settings.rate_limited_max_s,
                default_max_concurrency=settings.endpoint_default_concurrency,
            )
        return _runner


def current() -> InFlight | None:
    """The process's InFlight if one was made (nothing handed over otherwise)."""
    return _runner


def enabled() -> bool:
    """Whether I/O-bound members go to the event loop (RHESIS_INFLIGHT_PER_PROCESS > 0)."""
    from rhesis_pipeline.storage import engine

    return engine.settings().inflight_per_process > 0


def _reset_after_fork() -> None:
    global _runner
    _runner = None


os.register_at_fork(after_in_child=_reset_after_fork)
