"""A run's members: starting one, and storing its outcome (the API the worker calls).

A member's *terminal* outcome (passed, failed, error after the last retry, time limit
after the last retry, cancelled, lost) is stored by :func:`record_outcome` (or, without
waiting, :func:`submit_outcome`) through the process's outcome writer
(:mod:`rhesis_pipeline.runs.outcomes`), in one statement that

1. moves the result row to its terminal status *only if it is not terminal yet* — a
   redelivered or superseded member changes nothing;
2. only if (1) changed a row, adds one to the run's ``done`` and to the status's counter;
3. only if that made ``done = total``, inserts the ``collect_results`` message into the
   queue (same database, same transaction — no outbox), with a message id derived from
   the run id so that even a repeated insert is a no-op.

``done`` counts terminal transitions, each of which happens once per test, so it reaches
``total`` exactly once, whatever failed: the callback cannot be skipped or doubled (its
body is :func:`rhesis_pipeline.runs.complete.finish_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs.outcomes import Outcome, Recorded, Start, writer
from rhesis_pipeline.runs.states import TERMINAL_TEST_STATUSES, RunStatus, TestStatus
from rhesis_pipeline.storage import db, statements
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)

#: (message id, claim token) a member runs under; the token is None for a message that
#: was not claimed through rhesis.claims (a test calling the API directly).
Claim = tuple[str, str | None]


class MemberRow(NamedTuple):
    """What a member needs to execute, as ``load_member`` returns it (its first five
    columns, in this order) and the consumer preloads it with a claim (``load_claimed``).
    """

    status: str  # the test's stored status: queued, or terminal if already recorded
    test: dict[str, Any]
    executor: dict[str, Any]
    run_status: str
    cancel_requested: bool


@dataclass
class MemberStart:
    """A member about to execute: its test, its run's executor, state and cancel flag,
    and when it started (UTC)."""

    test: dict[str, Any]
    executor: dict[str, Any]
    run_status: RunStatus
    cancel_requested: bool
    started_at: datetime

    @classmethod
    def loaded(cls, row: MemberRow, started_at: datetime) -> MemberStart:
        return cls(
            row.test, row.executor, RunStatus(row.run_status), row.cancel_requested, started_at
        )


def start_member(run_id: str, test_id: str, claim: Claim | None = None) -> MemberStart | None:
    """Load what a member needs to execute, mark its claim started, and move its run
    from QUEUED to IN_PROGRESS.

    claim: (message_id, claim token) the member runs under; marked started in the same
    round trip, so that the rescuer counts a lost attempt if its worker dies now.
    Returns None if the member's outcome is already stored (a redelivery): the caller
    must then do nothing. One round trip; another only for a run's first members.
    Raises RunNotFound if the run has no such test.
    """
    started_at = datetime.now(timezone.utc)
    message_id, token = claim if claim else (None, None)
    rows = statements.run_prepared(
        "load_member",
        {"run_id": run_id, "test_id": test_id, "message_id": message_id, "token": token},
    )
    if not rows:
        raise RunNotFound(f"run {run_id} has no test {test_id!r}")
    row = MemberRow._make(rows[0][: len(MemberRow._fields)])
    if TestStatus(row.status).terminal:
        return None
    start = MemberStart.loaded(row, started_at)
    if start.run_status == RunStatus.QUEUED:
        with db.begin() as conn:
            conn.execute(Q["mark_run_started"], {"run_id": run_id})
        start.run_status = RunStatus.IN_PROGRESS
    return start


def start_preloaded(preload: Sequence[Any], claim: tuple[str, str]) -> MemberStart | None:
    """start_member for a member whose test was loaded with its claim (*preload*: a
    :class:`MemberRow`, or its five values in that order): no round trip; its claim is
    marked started by the outcome writer with its next batch (if the worker dies before
    that, the rescuer returns the member uncounted and it runs next on the careful path,
    :func:`start_member`). None: its outcome is already stored."""
    row = MemberRow._make(preload)
    if TestStatus(row.status).terminal:
        return None
    started_at = datetime.now(timezone.utc)
    writer().mark_started(Start(claim[0], claim[1], started_at))
    return MemberStart.loaded(row, started_at)


def record_outcome(
    run_id: str,
    test_id: str,
    *,
    status: TestStatus | str,
    ack: tuple[str, str] | None = None,
    claim: Claim | None = None,
    **fields: Any,
) -> Recorded:
    """Store a member's terminal outcome once and count it; fire the callback on the last.

    Returns once committed (through the process's outcome writer, which commits waiting
    outcomes together; see :mod:`rhesis_pipeline.runs.outcomes`).
    status: one of the terminal :class:`TestStatus` values (or its string).
    fields: ``output``, ``metrics``, ``error``, ``duration_ms``, ``worker``, ``attempts``,
    ``started_at`` (see :class:`rhesis_pipeline.runs.outcomes.Outcome`).
    attempts: executions so far, this one included (None keeps the stored count).
    ack: (message_id, queue_name) of the member's message, deleted (acked) in the same
    transaction so that a crash after the commit does not redeliver it.
    claim: (message_id, claim token) the member ran under; if that claim was superseded
    (the message was rescued and claimed again) the outcome is refused and logged.
    """
    outcome = _outcome(run_id, test_id, status=status, ack=ack, claim=claim, **fields)
    result = writer().record(outcome)
    _log_recorded(outcome, result)
    return result


def submit_outcome(
    run_id: str,
    test_id: str,
    *,
    status: TestStatus | str,
    ack: tuple[str, str],
    claim: tuple[str, str],
    on_settled: Callable[[bool], object],
    **fields: Any,
) -> None:
    """record_outcome without waiting (the fast path of a preloaded member): the outcome
    writer commits it with its next batch — its message deleted (acked) in the same
    transaction — and then calls ``on_settled(True)``; ``on_settled(False)`` if it was
    refused for good (the message must then run again). Takes record_outcome's fields."""
    outcome = _outcome(run_id, test_id, status=status, ack=ack, claim=claim, **fields)

    def settled(future: Future[Recorded]) -> None:
        exc = future.exception()
        if exc is None:
            _log_recorded(outcome, future.result())
        else:
            logger.error(
                "outcome of %s/%s not stored: %s",
                outcome.run_id,
                outcome.test_id,
                exc,
                extra={"run_id": outcome.run_id, "test_id": outcome.test_id},
            )
        on_settled(exc is None)

    writer().submit(outcome).add_done_callback(settled)


def defer_member(message_id: str, token: str, delay_s: float) -> bool:
    """Give claimed member *message_id* back to its queue, uncounted, not to be claimed for
    *delay_s* seconds, if it is still claimed under *token* (``defer_member`` in
    queries.sql). True if it went back."""
    rows = statements.run_prepared(
        "defer_member", {"message_id": message_id, "token": token, "delay_s": delay_s}
    )
    deferred = rows[0][0] if rows else 0  # its one column: how many went back (0 or 1)
    return bool(deferred)


def _outcome(
    run_id: str,
    test_id: str,
    *,
    status: TestStatus | str,
    output: Any = None,
    metrics: Any = None,
    error: str | None = None,
    duration_ms: float | None = None,
    worker: str | None = None,
    attempts: int | None = None,
    started_at: datetime | None = None,
    ack: tuple[str, str] | None = None,
    claim: Claim | None = None,
) -> Outcome:
    if status not in TERMINAL_TEST_STATUSES:
        allowed = ", ".join(s.value for s in TERMINAL_TEST_STATUSES)
        raise ValueError(f"status must be one of {allowed}, got {status!r}")
    return Outcome(
        run_id=str(run_id),
        test_id=str(test_id),
        status=TestStatus(status).value,
        output=output,
        metrics=metrics,
        error=error,
        duration_ms=duration_ms,
        worker=worker,
        attempts=attempts,
        started_at=started_at,
        ack_message_id=ack[0] if ack else None,
        ack_queue_name=ack[1] if ack else None,
        message_id=claim[0] if claim else None,
        claim_token=claim[1] if claim else None,
    )


def _log_recorded(outcome: Outcome, result: Recorded) -> None:
    # Also written by the outcome writer's thread, outside any message: say which run.
    run_id, test_id = outcome.run_id, outcome.test_id
    extra = {"run_id": run_id, "test_id": test_id}
    if result.fenced_out:
        logger.warning(
            "outcome of %s/%s refused: reported under claim %s, which was superseded "
            "(the message was rescued and claimed again)",
            run_id,
            test_id,
            outcome.claim_token,
            extra=extra,
        )
    elif not result.recorded:
        logger.info(
            "outcome of %s/%s already stored; %s ignored",
            run_id,
            test_id,
            outcome.status,
            extra=extra,
        )
    elif result.callback_enqueued:
        logger.info(
            "run %s: last outcome counted (%d/%d), collect_results enqueued",
            run_id,
            result.done,
            result.total,
            extra=extra,
        )
