"""What the pipeline's actors do: the bodies of ``execute_single_test``,
``collect_results`` and ``sweep``.

They are declared as dramatiq actors by the worker entry point
(:mod:`rhesis_pipeline.actors`) from the specs in :mod:`rhesis_pipeline.runs.messages`; this
module does not know about the broker, so anything may import it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from rhesis_pipeline.execution import executors, metrics
from rhesis_pipeline.execution.attempt import (
    PermanentExecutionError,
    RetryableExecutionError,
    TargetRaised,
)
from rhesis_pipeline.identity import worker_id
from rhesis_pipeline.maintenance.sweeper import Sweeper
from rhesis_pipeline.runs import complete, members, trace
from rhesis_pipeline.runs.messages import MEMBER
from rhesis_pipeline.tracing.attempts import Attempt
from rhesis_pipeline.worker import cancellation, inflight, metric_calls, shutdown
from rhesis_pipeline.worker.delivery import Delivery, deliveries
from rhesis_pipeline.worker.held import settle
from rhesis_pipeline.worker.loop_job import Job

logger = logging.getLogger(__name__)


#: One careful-path member at a time per process. A careful member is a suspect: it was
#: running (or claimed) in a process that died. Run alone, a death while it runs is its
#: own, and it alone is charged (the fast-path members running beside it are returned
#: uncounted); run side by side, the death of one would charge every careful neighbour.
_SUSPECTS = threading.Lock()


def execute_single_test(run_id: str, test_id: str) -> None:
    """Run one test of a run, evaluate its metrics, store its outcome (passed or failed).

    An exception fails the attempt; dramatiq retries it with backoff and, after the last
    attempt, MemberOutcomes stores ``error``. A PermanentExecutionError (an HTTP 4xx, a
    target this worker cannot import) is not retried. A redelivered member whose outcome
    is already stored does nothing. A member of a revoked run is stored as ``cancelled``
    without executing; one executing when its run is revoked is interrupted
    (:mod:`rhesis_pipeline.worker.cancellation`).
    """
    message = CurrentMessage.get_current_message()
    assert message is not None, "CurrentMessage middleware is missing"
    delivery = deliveries.of(message)
    if delivery is not None and shutdown.stopping():
        # SIGTERM came after the consumer handed it out: back to its queue, unstarted
        # and uncounted, for a worker that stays (the consumer releases it on ack).
        delivery.release = delivery.unstarted = True
        return
    # The fast path: the test came with its claim (Delivery.preloaded); its start is
    # marked, and its outcome stored, by the outcome writer without this thread waiting.
    # Else the careful path: both written before going on (see messages.UNSTARTED), and
    # one such member at a time in this process (_SUSPECTS).
    if delivery is not None and delivery.fast_path:
        _run_member(message, delivery, run_id, test_id)
        return
    with _SUSPECTS:
        _run_member(message, delivery, run_id, test_id)


def _run_member(
    message: Message[Any], delivery: Delivery | None, run_id: str, test_id: str
) -> None:
    """Start, execute and store member *test_id* of *run_id*. *delivery* is None only for
    a message that no consumer of this process handed out (then: the careful path)."""
    started = time.monotonic()
    me = worker_id()
    attempts = message.options.get("retries", 0) + 1
    token = None if delivery is None else delivery.claim_token
    claim = (message.message_id, token)
    preloaded = None if delivery is None else delivery.preloaded
    fast = preloaded is not None and token is not None
    if preloaded is not None and token is not None:
        start = members.start_preloaded(preloaded, (message.message_id, token))
    else:
        start = members.start_member(run_id, test_id, claim)
    if start is None:
        logger.info("test %s of run %s already has its outcome; skipping", test_id, run_id)
        return

    def settled_by_writer() -> None:
        """From here on the outcome writer finishes the message (see Delivery)."""
        if delivery is not None:
            delivery.settled_by_writer = True

    def hand_over(status: str, **fields: Any) -> None:
        """Hand the outcome to the outcome writer without waiting: its transaction
        deletes the message (its ack), then settle() lets it go."""
        settled_by_writer()
        members.submit_outcome(
            run_id,
            test_id,
            status=status,
            worker=me,
            ack=(message.message_id, message.queue_name),
            claim=(message.message_id, str(token)),
            on_settled=partial(settle, message.queue_name, message.message_id),
            **fields,
        )

    def store(status: str, **fields: Any) -> None:
        if fast:  # free the thread: the outcome writer commits it with its next batch
            hand_over(status, **fields)
            return
        recorded = members.record_outcome(
            run_id,
            test_id,
            status=status,
            worker=me,
            ack=(message.message_id, message.queue_name),
            claim=claim,
            **fields,
        )
        if recorded.acked and delivery is not None:
            delivery.acked_in_transaction = True

    if start.cancel_requested or (fast and cancellation.was_revoked(run_id)):
        store("cancelled", error="run cancelled")
        return
    limit_ms = message.options.get("time_limit") or MEMBER.options["time_limit"]
    # I/O-bound: the event loop runs it (attempts, time limit, endpoint limits) and hands
    # its outcome over; this thread is free at once (see rhesis_pipeline.worker.inflight). An
    # HTTP test cannot kill its worker, so it goes there from the careful path too (its
    # start is already marked); an async python target on the careful path runs here.
    on_loop = token is not None and (fast or start.executor.get("type") == "http")
    if on_loop and executors.runs_async(start.executor) and inflight.enabled():
        settled_by_writer()
        inflight.runner().submit(
            Job(
                run_id=run_id,
                test_id=test_id,
                executor=start.executor,
                test=start.test,
                attempts_before=attempts - 1,
                max_retries=message.options.get("max_retries", MEMBER.options["max_retries"]),
                time_limit_s=limit_ms / 1000,
                min_backoff_ms=message.options.get("min_backoff", 1_000),
                max_backoff_ms=message.options.get("max_backoff", 60_000),
                store=hand_over,
                started_at=start.started_at,
                defer=partial(_defer, message, str(token)),
                deferrals=int(message.options.get("rhesis_deferrals", 0)),
                trace=message.options,
                queued_ms=_queued_ms(message),
            )
        )
        return
    deadline = started + limit_ms / 1000
    max_retries = message.options.get("max_retries", MEMBER.options["max_retries"])
    span = Attempt(
        message.options, run_id, test_id, attempt=attempts,
        executor=str(start.executor.get("type", "python")), queued_ms=_queued_ms(message),
    )  # fmt: skip
    with span:
        _execute_here(span, start, (run_id, test_id), deadline, (attempts, max_retries), store)


def _execute_here(
    span: Attempt,
    start: members.MemberStart,
    member: tuple[str, str],
    deadline: float,
    attempts_of: tuple[int, int],
    store: Callable[..., None],
) -> None:
    """Execute *member* (run id, test id) on this thread, evaluate its metrics and *store*
    the outcome; a failed attempt raises (dramatiq retries it). *span*: the attempt's
    span; *attempts_of*: (this attempt's number, the run's max_retries)."""
    run_id, test_id = member
    attempts, max_retries = attempts_of
    try:
        with cancellation.executing(run_id):
            execution = executors.execute(start.executor, start.test, deadline=deadline)
    except RetryableExecutionError as exc:
        span.outcome("retry" if attempts <= max_retries else "error", reason=str(exc))
        # Expected (connection, 5xx, 429, a target that raised): one line, no traceback;
        # dramatiq retries it and MemberOutcomes stores the error when the attempts are
        # used up.
        where = getattr(exc, "where", None)
        logger.warning(
            "test %s of run %s: attempt %d failed: %s%s",
            test_id,
            run_id,
            attempts,
            exc,
            f" (raised at {where})" if where else "",
        )
        if isinstance(exc, TargetRaised):
            logger.debug("the target's traceback", exc_info=exc.__cause__)
        raise
    except cancellation.RunCancelled:
        # The run was revoked while this member executed: its test is already stored as
        # cancelled (so this outcome is refused); what matters is the ack.
        logger.warning("test %s of run %s interrupted: the run was revoked", test_id, run_id)
        span.outcome("cancelled", reason="run revoked while this test was executing")
        store("cancelled", error="run revoked while this test was executing")
        return
    except PermanentExecutionError as exc:
        span.outcome("error", reason=str(exc))
        raise
    if metrics.needs_loop(start.test.get("metrics")):  # an LLM judge: the loop's limits
        loop = inflight.runner() if inflight.enabled() else None
        status, fields = metric_calls.outcome_on_loop(
            start.test, execution, loop, deadline=deadline
        )
    else:
        status, fields = metrics.outcome(start.test, execution)
    span.outcome(status, latency_ms=execution.duration_ms, reason=fields.get("error"),
                 metrics=fields.get("metrics"))  # fmt: skip
    store(status, attempts=attempts, started_at=start.started_at, **fields)


def _queued_ms(message: Message[Any]) -> float:
    """Milliseconds *message* waited in its queue: since it was enqueued, or due (a retry's
    or a deferral's eta)."""
    since = max(message.message_timestamp, int(message.options.get("eta") or 0))
    return time.time() * 1000 - since


def _defer(message: Message[Any], token: str, delay_s: float) -> bool:
    """Give a member handed to the event loop back to its queue for *delay_s* seconds,
    uncounted, while it is still claimed under *token*; the consumer no longer holds it."""
    deferred = members.defer_member(message.message_id, token, delay_s)
    if deferred:
        settle(message.queue_name, message.message_id, True)
    return deferred


def collect_results(run_id: str) -> None:
    """Finish a run: aggregate its results, set its status, call run-finished hooks.

    Harmless if delivered twice: a run already final is left as it is.
    """
    with trace.completion(run_id) as span:  # the run's root span ends with it
        summary = complete.finish_run(run_id)
        span.finished(None if summary is None else trace.root_attributes(summary))
        if summary is not None:
            complete.run_hooks(summary)


def sweep() -> None:
    """Rescue dead workers' messages, expire overdue runs, apply retention (one sweep at
    a time; a second one started meanwhile does nothing)."""
    Sweeper.from_settings().run_once()
