"""Rescue: returns the messages of dead workers to their queue, by liveness, not by age.

A consumed message is *orphaned* when the worker that claimed it is dead (see
:mod:`rhesis_pipeline.worker.registry` and ``find_orphans`` in sql/queries.sql): it stopped, its
heartbeat is older than the timeout, or its liveness lock is gone and its heartbeat is
older than the lock grace (``lock_grace_s``: a worker whose connection dropped has that
long to reconnect and take its lock again). A long test on a live worker is never
rescued, however old; nor is the work of a worker that is only reconnecting.

An orphan goes back to its queue, at its original place, and its queue's consumers are
woken by NOTIFY. A run member is judged by whether its worker died while *running* it
(its claim was marked started when it loaded its test):

* only claimed (prefetched, never started): it runs again, no attempt counted, never a
  timeout;
* started, and running for longer than its time limit plus ``member_grace_s``: not run
  again but stored as ``error`` (timed out);
* started on the *fast path* (its test preloaded with its claim; its start mark and its
  outcome written in batches by the outcome writer, see :mod:`rhesis_pipeline.worker.tasks`): it
  may have finished with its outcome still unwritten, so nobody is charged: it runs again,
  no attempt counted, marked ``rhesis_unstarted`` (the mark is also set on every member
  returned uncounted, and stays), which sends it down the *careful path* next: start
  marked before it executes, outcome committed before it is acked;
* started on the careful path: the lost attempt counts (``options.retries + 1``, and
  ``options.rhesis_lost`` counts the worker deaths); one whose attempts are used up
  (``retries > max_retries``: a test that kills its worker process, every time) is stored
  as ``error`` ("the worker process died while running this test, N times") instead of
  crash-looping every worker. So a test that kills its worker costs one worker death
  more than its attempts (the first, on the fast path, is not counted).

A timeout or an error goes through the normal outcome path, in the same transaction, and
may finish its run.

Other actors' messages (callbacks, sweeps) go back with their attempt counted.

When the rescuer's process traces, a started member's lost attempt becomes a span of its
run's trace (``test_attempt``, ``rhesis.test.verdict=lost``, from its start to the rescue),
which the dead worker could not end itself.

The zombie case — a worker cut off from the database that later reports a result — is
handled by claim tokens: the rescued message is claimed again under a new token, and the
old holder's outcome and ack are refused (see ``record_outcomes`` and ``ack_messages``).

Every worker process runs the rescuer in a thread of its own
(:class:`~rhesis_pipeline.maintenance.service.ServiceThread`, every heartbeat interval),
and the periodic sweep runs it too; batches hold ``RESCUE_LOCK_KEY``, so one runs at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.maintenance.service import Service, run_batches, utcnow
from rhesis_pipeline.runs import messages
from rhesis_pipeline.runs.outcomes import Outcome, write_batch
from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.locks import RESCUE_LOCK_KEY, WORKER_LOCK_CLASS
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.tracing.attempts import lost_attempt
from rhesis_pipeline.tracing.setup import tracing_enabled

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RescueConfig:
    """heartbeat_timeout_s: seconds without a heartbeat after which a worker is dead
    whether or not it holds its lock. lock_grace_s: seconds without a heartbeat after
    which a worker that does not hold its lock is dead (before that it may be
    reconnecting). settle_s: how long a rescuer's own database session must have been
    connected before it judges workers by heartbeat and lock (None: lock_grace_s) — after
    a connection loss shared by everyone, the workers need that long to be back.
    member_grace_s: seconds past its time limit after which an orphaned
    member is a timeout instead of being run again. batch_size: orphans handled per
    transaction. max_batches: per run_once."""

    heartbeat_timeout_s: float = 30.0
    lock_grace_s: float = 15.0
    settle_s: float | None = None
    member_grace_s: float = 30.0
    batch_size: int = 500
    max_batches: int = 100

    def __post_init__(self) -> None:
        if self.heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat_timeout_s must be positive")
        if self.lock_grace_s < 0 or (self.settle_s is not None and self.settle_s < 0):
            raise ValueError("lock_grace_s and settle_s must not be negative")
        if self.member_grace_s < 0:
            raise ValueError("member_grace_s must not be negative")
        if not 1 <= self.batch_size <= 100_000 or self.max_batches < 1:
            raise ValueError("batch_size must be 1..100000 and max_batches at least 1")

    @classmethod
    def from_settings(cls) -> RescueConfig:
        s = engine.settings()
        return cls(
            heartbeat_timeout_s=s.heartbeat_timeout_s,
            lock_grace_s=s.lock_grace_s,
            member_grace_s=s.member_grace_s,
        )


@dataclass
class RescueResult:
    """What one :meth:`Rescuer.run_once` did: messages back in their queue, members ended
    as timed out or as crashed (stored as ``error``), batches, whether another rescuer
    held the lock (nothing done), and how long it took in seconds."""

    requeued: int = 0
    timed_out: int = 0
    crashed: int = 0  # members whose workers died running them max_retries + 1 times
    skipped: bool = False
    batches: int = 0
    duration_s: float = 0.0


@dataclass
class Rescuer(Service):
    """Returns the messages of dead workers to their queue (see the module docstring)."""

    config: RescueConfig = field(default_factory=RescueConfig)
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def from_settings(cls) -> Rescuer:
        return cls(RescueConfig.from_settings())

    def run_once(self, *, dry_run: bool = False) -> RescueResult:
        started = time.monotonic()
        result = RescueResult()
        now = self.clock()
        lost: list[tuple[Row[Any], bool]] = []  # started members: (row, attempt counted)

        def rescue_batch(conn: Connection) -> int:
            rows = conn.execute(
                Q["find_orphans"],
                {
                    "now": now,
                    "timeout_s": self.config.heartbeat_timeout_s,
                    "lock_grace_s": self.config.lock_grace_s,
                    "settle_s": (
                        self.config.lock_grace_s
                        if self.config.settle_s is None
                        else self.config.settle_s
                    ),
                    "lock_class": WORKER_LOCK_CLASS,
                    "batch": self.config.batch_size,
                },
            ).all()
            ended: list[Outcome] = []  # members not to run again, with their outcome
            ended_ids, again, counted = [], [], []
            for row in rows:
                verdict = self._verdict(row, now)
                if row.started_at is not None and row.actor_name == messages.MEMBER.name:
                    lost.append((row, verdict is not False))
                if isinstance(verdict, Outcome):
                    ended.append(verdict)
                    ended_ids.append(str(row.message_id))
                    if verdict.error and verdict.error.startswith("timed out"):
                        result.timed_out += 1
                    else:
                        result.crashed += 1
                    continue
                again.append(str(row.message_id))
                if verdict:
                    counted.append(str(row.message_id))
            result.requeued += len(again)
            if dry_run:
                return len(rows)
            if ended:
                write_batch(ended, conn)
                conn.execute(Q["commit_synchronously"])
                conn.execute(Q["reject_orphans"], {"ids": ended_ids})
            if again:
                conn.execute(Q["requeue_orphans"], {"ids": again, "counted": counted})
            return len(rows)

        run = run_batches(
            rescue_batch,
            lock_key=RESCUE_LOCK_KEY,
            batch_size=self.config.batch_size,
            max_batches=self.config.max_batches,
            dry_run=dry_run,
        )
        result.skipped, result.batches = run.skipped, run.batches
        result.duration_s = time.monotonic() - started
        if not dry_run and tracing_enabled():
            for row, counted in lost:  # their workers could not end their attempts' spans
                run_id, test_id = row.args
                lost_attempt(
                    row.options, str(run_id), str(test_id),
                    attempt=(row.options or {}).get("retries", 0) + 1,
                    started_at=row.started_at, worker=row.worker_name or str(row.worker_id),
                    counted=counted,
                )  # fmt: skip
        if result.requeued or result.timed_out or result.crashed:
            logger.warning(
                "rescue%s: %d messages of dead workers back in their queue, %d members timed "
                "out, %d ended as error (their workers died running them every attempt)",
                " (dry run)" if dry_run else "",
                result.requeued,
                result.timed_out,
                result.crashed,
            )
        return result

    def _verdict(self, row: Row[Any], now: datetime) -> Outcome | bool:
        """What becomes of an orphan: an Outcome (not run again: stored as that), True
        (run again, the lost attempt counted) or False (run again as it was)."""
        options = row.options or {}
        if row.actor_name != messages.MEMBER.name:
            return True
        if row.started_at is None:
            return False  # claimed, never started: its worker died before it ran
        run_id, test_id = row.args
        attempts = options.get("retries", 0) + 1
        limit_ms = options.get("time_limit") or messages.MEMBER.options["time_limit"]
        deadline = (
            row.started_at
            + timedelta(milliseconds=limit_ms)
            + timedelta(seconds=self.config.member_grace_s)
        )
        if now > deadline:
            return Outcome(
                str(run_id),
                str(test_id),
                "error",
                error=f"timed out: its worker stopped answering and it ran past its time "
                f"limit of {limit_ms / 1000:g}s",
                attempts=attempts,
            )
        if not options.get(messages.UNSTARTED):
            # The fast path: its start was marked and its outcome written in batches, so
            # it may have finished with its outcome lost (a neighbour of a test that
            # killed the worker): nobody is charged; it runs again on the careful path.
            return False
        max_retries = options.get("max_retries", messages.MEMBER.options["max_retries"])
        if attempts > max_retries:
            deaths = options.get("rhesis_lost", 0) + 1
            return Outcome(
                str(run_id),
                str(test_id),
                "error",
                error=f"the worker process died while running this test, "
                f"{deaths} time{'s' if deaths != 1 else ''}",
                attempts=attempts,
            )
        return True
