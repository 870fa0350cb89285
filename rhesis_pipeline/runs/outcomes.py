"""The outcome writer: stores members' terminal outcomes in batches (group commit).

Every outcome of a run adds to that run's counters, so the run's row is locked by each
outcome transaction until it commits. One transaction per outcome serialised all the
members of a run on that row: measured, 85 % of the time went to waiting for its lock.
So each worker process has one writer thread. A worker thread hands it an outcome and
waits for the commit (the actor returns only once its outcome is stored, as before);
the writer takes whatever outcomes are waiting — up to ``MAX_BATCH`` — and stores them
in one transaction with one statement (``record_outcomes`` in sql/queries.sql), which
keeps every guarantee of the single-outcome path: each test's outcome is stored once,
counted once, and the run's last outcome enqueues the callback in the same transaction.

A batch that cannot be written because the database is unreachable is not dropped: the
writer keeps it and tries again (bounded, jittered backoff; one log line when the
database goes, one when it is back) until it commits, while the actors wait. An outcome
is therefore stored once the database answers again — or, if the process dies first,
its message (still ``consumed``, by a worker now dead) is rescued and runs again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from rhesis_pipeline.execution import storable
from rhesis_pipeline.runs import messages
from rhesis_pipeline.runs.states import TestStatus
from rhesis_pipeline.storage import driver_errors, statements
from rhesis_pipeline.storage.outage import Outage

logger = logging.getLogger(__name__)

#: Most outcomes one transaction stores.
MAX_BATCH = 256
#: Seconds between an actor's checks that the writer thread is still alive while it
#: waits for its outcome's commit (it waits as long as the writer keeps trying).
WAIT_SLICE_S = 1.0


@dataclass
class Outcome:
    run_id: str
    test_id: str
    status: str  # a terminal TestStatus value
    output: Any = None
    metrics: Any = None
    error: str | None = None
    duration_ms: float | None = None
    worker: str | None = None
    attempts: int | None = None
    started_at: datetime | None = None
    ack_message_id: str | None = None
    ack_queue_name: str | None = None
    #: The member's message and the token of the claim it ran under: an outcome whose
    #: token is no longer the message's claim (rescued, claimed again) is refused.
    message_id: str | None = None
    claim_token: str | None = None
    #: output and metrics as JSON, set by storable.make_storable before a batch is written.
    output_json: str | None = field(default=None, repr=False)
    metrics_json: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Start:
    """A preloaded member started executing under claim *token* of *message_id*: marked
    on its claim by the writer with the next batch (nobody waits for it)."""

    message_id: str
    token: str
    started_at: datetime


class RecordedRow(NamedTuple):
    """One row of ``record_outcomes`` (its first seven columns, in this order): what
    became of the outcome at position ``ord`` of the batch."""

    ord: int
    recorded: bool  # its result row moved to the terminal status now
    done: int | None  # the run's counters after this batch
    total: int | None
    callback_enqueued: bool  # this batch counted the run's last outcome
    acked: bool  # its message was deleted
    accepted: bool  # its claim was still current (not fenced out)


@dataclass
class Recorded:
    recorded: bool  # False: the outcome was already stored; nothing changed
    done: int | None
    total: int | None
    callback_enqueued: bool
    acked: bool = False  # the member's queue row was deleted (acked) in the same transaction
    fenced_out: bool = False  # refused: reported under a superseded claim


#: An outcome handed to the writer and the Future its committer resolves.
_Waiting = tuple[Outcome, Future[Recorded]]
#: What the writer's queue holds: an outcome with its Future, or a start mark (no Future).
_Item = tuple[Outcome | Start, Future[Recorded] | None]

#: execution.storable sits below runs and cannot name Outcome: its make_storable, typed.
_make_storable: Callable[[Outcome], Outcome] = storable.make_storable


class OutcomeWriter:
    """One per process; its thread starts on first use."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Outcomes handed to the writer and not yet resolved (committed or refused).
        self._unresolved = 0
        self._resolved = threading.Condition(self._lock)
        self._outage = Outage("outcome writer")

    def record(self, outcome: Outcome) -> Recorded:
        """Store *outcome* and return once it is committed (or raise why it was not).

        Waits as long as the writer keeps trying — through a database outage too — in
        slices, so that dramatiq's time limit or a revocation can still interrupt it.
        """
        future = self.submit(outcome)
        while True:
            try:
                return future.result(WAIT_SLICE_S)
            except FutureTimeout:
                if not self._ensure_thread():
                    continue
                # The thread had died (and was restarted): our outcome may be gone with it.
                if not future.done():
                    raise RuntimeError(
                        "the outcome writer thread died; outcome not stored"
                    ) from None

    def submit(self, outcome: Outcome) -> Future[Recorded]:
        """Hand *outcome* to the writer and return at once: the Future resolves to its
        Recorded once committed (or to the exception that refused it for good)."""
        future: Future[Recorded] = Future()
        with self._lock:
            self._unresolved += 1
        future.add_done_callback(self._one_resolved)
        self._ensure_thread()
        self._queue.put((outcome, future))
        return future

    def _one_resolved(self, _future: Future[Recorded]) -> None:
        with self._lock:
            self._unresolved -= 1
            if self._unresolved == 0:
                self._resolved.notify_all()

    @property
    def unresolved(self) -> int:
        """Outcomes handed over and not yet committed or refused."""
        with self._lock:
            return self._unresolved

    def drain(self, timeout: float) -> bool:
        """Wait until every outcome handed over is resolved (a graceful stop: outcomes of
        members that did not wait for their commit must not be lost with the process);
        False if some were still waiting after *timeout* seconds (e.g. no database)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unresolved:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._resolved.wait(left)
        return True

    def mark_started(self, start: Start) -> None:
        """Mark a claim started with the next batch; returns at once (see Start)."""
        self._ensure_thread()
        self._queue.put((start, None))

    def _ensure_thread(self) -> bool:
        """Start the writer thread if it is not running; True if it had to be (re)started."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                started = self._thread is not None
                self._thread = threading.Thread(
                    target=self._loop, name="rhesis-outcome-writer", daemon=True
                )
                self._thread.start()
                return started
            return False

    def _loop(self) -> None:
        batch: list[_Waiting] = []
        starts: list[Start] = []
        while True:
            if not batch and not starts:
                self._take(self._queue.get(), batch, starts)
            while len(batch) + len(starts) < MAX_BATCH:
                try:
                    self._take(self._queue.get_nowait(), batch, starts)
                except queue.Empty:
                    break
            try:
                results = write_batch([o for o, _ in batch], starts=starts)
            except Exception as exc:
                if driver_errors.is_connection_error(exc):
                    # Keep the batch; try again when the database answers.
                    time.sleep(self._outage.failed(exc))
                    continue
                # One outcome must not fail the others: write each alone.
                logger.warning(
                    "a batch of %d outcomes failed (%s); writing them one by one",
                    len(batch),
                    storable.text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__),
                )
                if starts and self._write_starts_alone(starts):
                    starts = []
                batch = [item for item in batch if not self._write_alone(*item)]
                continue
            self._outage.ok()
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
            batch, starts = [], []

    @staticmethod
    def _take(item: _Item, batch: list[_Waiting], starts: list[Start]) -> None:
        what, future = item
        if isinstance(what, Start):
            starts.append(what)
        elif future is not None:  # an outcome always comes with its Future
            batch.append((what, future))

    def _write_starts_alone(self, starts: list[Start]) -> bool:
        """Write start marks in a transaction of their own; False if the database went
        away meanwhile (kept for the next try). A refused mark is dropped, logged: it only
        means that attempt is not counted if its worker dies."""
        try:
            write_batch([], starts=starts)
        except Exception as exc:
            if driver_errors.is_connection_error(exc):
                return False
            logger.warning("%d start marks not written: %s", len(starts), exc)
        return True

    def _write_alone(self, outcome: Outcome, future: Future[Recorded]) -> bool:
        """Write *outcome* in a transaction of its own; if the database refuses it, store
        the test as ``error`` saying why. False: the database went away meanwhile (the
        outcome stays in the batch, to be tried again)."""
        try:
            (result,) = write_batch([outcome])
        except Exception as exc:
            if driver_errors.is_connection_error(exc):
                return False
            reason = storable.text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            refused = replace(
                outcome,
                status=TestStatus.ERROR.value,
                output=None,
                metrics=None,
                error=f"outcome not storable: {type(exc).__name__}: {reason}"[:2000],
            )
            try:
                (result,) = write_batch([refused])
            except Exception as again:
                if driver_errors.is_connection_error(again):
                    return False
                future.set_exception(again)
                return True
        future.set_result(result)
        return True


def write_batch(
    outcomes: list[Outcome], conn: Any = None, *, starts: list[Start] | None = None
) -> list[Recorded]:
    """Store *outcomes* in one transaction; one Recorded per outcome, in order.

    conn: a connection inside a transaction of the caller's (revocation: the outcomes
    then commit, or not, with the rest of that transaction); default: a transaction of
    its own, committed before this returns.
    starts: start marks written in the same transaction (before the outcomes).
    """
    if starts and outcomes:
        # A member that finishes in this batch needs no start mark: its claim is deleted
        # with its outcome, and the outcome carries its own started_at.
        finishing = {(o.message_id, o.claim_token) for o in outcomes}
        starts = [s for s in starts if (s.message_id, s.token) not in finishing]
    start_step = [_mark_started(starts)] if starts else []
    if not outcomes:
        if starts:
            statements.run_prepared_batch(start_step)
        return []
    outcomes = [_make_storable(o) for o in outcomes]
    run_ids = sorted({o.run_id for o in outcomes})
    callbacks = []
    for run_id in run_ids:
        message = messages.callback_message(run_id)
        callbacks.append((run_id, message.message_id, message.queue_name, messages.encode(message)))
    params = {
        "ords": list(range(len(outcomes))),
        "run_ids": [o.run_id for o in outcomes],
        "test_ids": [o.test_id for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "outputs": [o.output_json for o in outcomes],
        "metrics": [o.metrics_json for o in outcomes],
        "errors": [o.error for o in outcomes],
        "durations": [o.duration_ms for o in outcomes],
        "workers": [o.worker for o in outcomes],
        "attempts": [o.attempts for o in outcomes],
        "started": [o.started_at for o in outcomes],
        "ack_ids": [o.ack_message_id for o in outcomes],
        "ack_queues": [o.ack_queue_name for o in outcomes],
        "message_ids": [o.message_id for o in outcomes],
        "tokens": [o.claim_token for o in outcomes],
        "cb_run_ids": [c[0] for c in callbacks],
        "cb_ids": [c[1] for c in callbacks],
        "cb_queues": [c[2] for c in callbacks],
        "cb_messages": [c[3] for c in callbacks],
    }
    if conn is None:
        # One round trip, one transaction (see statements.run_prepared_batch).
        rows = statements.run_prepared_batch(
            [*start_step, ("lock_runs", {"run_ids": run_ids}), ("record_outcomes", params)]
        )
    else:
        statements.execute_prepared(conn, "lock_runs", {"run_ids": run_ids})
        rows = statements.execute_prepared(conn, "record_outcomes", params)
    results: list[Recorded] = []
    seen: set[tuple[str, str]] = set()
    fired: set[str] = set()
    for outcome, raw in zip(outcomes, rows, strict=True):
        key = (outcome.run_id, outcome.test_id)
        row = RecordedRow._make(raw[: len(RecordedRow._fields)])
        recorded = bool(row.recorded) and key not in seen  # one delivery wins in a batch
        seen.add(key)
        fired_here = bool(row.callback_enqueued) and recorded and outcome.run_id not in fired
        if fired_here:
            fired.add(outcome.run_id)
        results.append(
            Recorded(
                recorded,
                row.done,
                row.total,
                fired_here,
                bool(row.acked),
                fenced_out=not row.accepted,
            )
        )
    return results


def _mark_started(starts: list[Start]) -> tuple[str, dict[str, Any]]:
    return (
        "mark_started",
        {
            "ids": [s.message_id for s in starts],
            "tokens": [s.token for s in starts],
            "started": [s.started_at for s in starts],
        },
    )


_writer = OutcomeWriter()


def writer() -> OutcomeWriter:
    return _writer


def _reset_after_fork() -> None:
    global _writer
    _writer = OutcomeWriter()


os.register_at_fork(after_in_child=_reset_after_fork)
