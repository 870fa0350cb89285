"""Stores the terminal outcome of a member whose execution failed for good.

A member that returns stores its own outcome (passed/failed). One that raises is
retried by dramatiq's Retries middleware; when Retries gives up (``message.failed``)
— retries exhausted, a time limit on the last attempt, an exception in ``throws`` —
this middleware stores ``error`` with the exception's text, which counts the member and
may fire the completion callback. A skipped member (AgeLimit, or a revoked run) is
stored as ``cancelled`` if its run was cancelled, else ``error``.

It must come *before* Retries in the middleware list: after-hooks run in reverse order,
so its ``after_process_message`` then runs after Retries has decided.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq import Middleware
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware.time_limit import TimeLimitExceeded
from dramatiq.worker import Worker

from rhesis_pipeline.execution.attempt import ExecutionError
from rhesis_pipeline.identity import worker_id
from rhesis_pipeline.runs import members, read
from rhesis_pipeline.runs.outcomes import writer
from rhesis_pipeline.storage import statements
from rhesis_pipeline.worker import inflight
from rhesis_pipeline.worker.delivery import deliveries
from rhesis_pipeline.worker.shutdown import DRAIN_TIMEOUT_S, INFLIGHT_DRAIN_S

logger = logging.getLogger(__name__)

#: The actor whose messages are run members.
MEMBER_ACTOR = "execute_single_test"


def describe(exception: BaseException, message: MessageProxy) -> str:
    """The error stored for a member that failed for good with *exception*."""
    if isinstance(exception, ExecutionError):
        return str(exception)
    if isinstance(exception, TimeLimitExceeded):
        limit = message.options.get("time_limit")
        return f"time limit of {limit / 1000:g}s exceeded" if limit else "time limit exceeded"
    text = str(exception).strip()
    return f"{type(exception).__name__}: {text}" if text else type(exception).__name__


def _not_retried(broker: Broker, message: MessageProxy, exception: BaseException) -> int:
    """1 if Retries did not retry *exception* (it is in the actor's ``throws``), else 0."""
    throws = message.options.get("throws") or broker.get_actor(message.actor_name).options.get(
        "throws"
    )
    return 1 if throws and isinstance(exception, throws) else 0


def _claim_token(message: MessageProxy) -> str | None:
    """The token of the claim *message* ran under (None: not claimed by this process)."""
    delivery = deliveries.of(message)
    return None if delivery is None else delivery.claim_token


# The drain times are the shutdown's (rhesis_pipeline.worker.shutdown: the grace a
# platform must allow is derived from them); re-exported here, where they are used.
__all__ = ["DRAIN_TIMEOUT_S", "INFLIGHT_DRAIN_S", "MemberOutcomes", "describe"]


class MemberOutcomes(Middleware):
    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        # Fast-path members did not wait for their outcome's commit: store what is still
        # waiting before the process exits. This runs before WorkerRegistry marks the
        # worker stopped (after-hooks run in reverse), so no rescuer takes those messages
        # meanwhile. What is still unwritten after the timeout (no database) stays
        # claimed by a stopped worker: the rescuer returns it, and it runs again.
        loop_runner = inflight.current()
        if loop_runner is not None:
            # Tests in flight on the event loop: finish within the grace, or leave them to
            # the rescuer (uncounted); then give back this worker's endpoint slots.
            loop_runner.stop(INFLIGHT_DRAIN_S)
            try:
                statements.run_prepared("endpoint_release_worker", {"worker": worker_id()})
            except Exception as exc:  # its leases expire by themselves
                logger.warning("could not give back the endpoint slots: %s", exc)
        waiting = writer().unresolved
        if not waiting:
            return
        logger.info("storing %d outcomes before stopping", waiting)
        if not writer().drain(DRAIN_TIMEOUT_S):
            logger.error(
                "stopping with outcomes not stored after %.0fs (database unreachable?); "
                "their tests will run again",
                DRAIN_TIMEOUT_S,
            )

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or message.actor_name != MEMBER_ACTOR or not message.failed:
            return
        run_id, test_id = message.args
        # Retries counts failures it retried; one it did not retry (throws) is one more.
        attempts = message.options.get("retries", 0) + _not_retried(broker, message, exception)
        error = describe(exception, message)
        logger.warning(
            "test %s of run %s errored after %d attempt(s): %s", test_id, run_id, attempts, error
        )
        members.record_outcome(
            run_id,
            test_id,
            status="error",
            error=error[:10_000],
            worker=worker_id(),
            attempts=attempts,
            claim=(message.message_id, _claim_token(message)),
        )

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        if message.actor_name != MEMBER_ACTOR:
            return
        run_id, test_id = message.args
        cancelled = read.is_cancel_requested(run_id)
        members.record_outcome(
            run_id,
            test_id,
            status="cancelled" if cancelled else "error",
            error="run cancelled" if cancelled else "skipped before execution (message too old)",
            worker=worker_id(),
        )
