"""Rescue: returns the messages of dead workers to their queue, by liveness, not by age.

A consumed message is *orphaned* when the worker that claimed it is dead (see
:mod:`rhesis_pipeline.registry`): it stopped, its liveness lock is gone (the process
died), or its heartbeat is older than the timeout. A long test on a live worker is never
rescued, however old. An orphan goes back to its queue with its attempt counted
(``options.retries + 1``) and its queue's consumers woken by NOTIFY. Exception: a run
member that has been running for longer than its time limit plus ``member_grace_s`` is
not run again; its test is stored as ``error`` (timed out) through the normal outcome
path, which may finish its run.

The zombie case — a worker cut off from the database that later reports a result — is
handled by claim tokens: the rescued message is claimed again under a new token, and the
old holder's outcome and ack are refused (see ``record_outcomes`` and ``ack_messages``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .. import db
from ..queries import Q

logger = logging.getLogger(__name__)

#: Advisory lock key of the rescuer (one at a time per database).
LOCK_KEY = 0x52485349_0102
#: The actor whose messages are run members.
MEMBER_ACTOR = "execute_single_test"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class RescueConfig:
    """heartbeat_timeout_s: seconds without a heartbeat after which a worker is dead
    (a worker whose lock is gone is dead at once). member_grace_s: seconds past its time
    limit after which an orphaned member is a timeout instead of being run again.
    batch_size: orphans handled per transaction. max_batches: per run_once."""

    heartbeat_timeout_s: float = 30.0
    member_grace_s: float = 30.0
    batch_size: int = 500
    max_batches: int = 100

    def __post_init__(self) -> None:
        if self.heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat_timeout_s must be positive")
        if self.member_grace_s < 0:
            raise ValueError("member_grace_s must not be negative")
        if not 1 <= self.batch_size <= 100_000 or self.max_batches < 1:
            raise ValueError("batch_size must be 1..100000 and max_batches at least 1")


@dataclass
class RescueResult:
    requeued: int = 0
    timed_out: int = 0
    skipped: bool = False
    batches: int = 0
    duration_s: float = 0.0


@dataclass
class Rescuer:
    config: RescueConfig = field(default_factory=RescueConfig)
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def from_settings(cls) -> Rescuer:
        s = db.settings()
        return cls(
            RescueConfig(heartbeat_timeout_s=s.heartbeat_timeout_s, member_grace_s=s.member_grace_s)
        )

    def run_once(self, *, dry_run: bool = False) -> RescueResult:
        from ..registry import WORKER_LOCK_CLASS

        started = time.monotonic()
        result = RescueResult()
        now = self.clock()
        for _ in range(self.config.max_batches):
            with db.begin() as conn:
                if not conn.execute(Q["try_maintenance_lock"], {"key": LOCK_KEY}).scalar():
                    result.skipped = True
                    break
                rows = conn.execute(
                    Q["find_orphans"],
                    {
                        "now": now,
                        "timeout_s": self.config.heartbeat_timeout_s,
                        "lock_class": WORKER_LOCK_CLASS,
                        "batch": self.config.batch_size,
                    },
                ).all()
                if not rows:
                    break
                result.batches += 1
                overdue = [r for r in rows if self._overdue(r, now)]
                again = [r for r in rows if r not in overdue]
                if dry_run:
                    result.timed_out += len(overdue)
                    result.requeued += len(again)
                    conn.rollback()
                    break
                for r in overdue:
                    self._time_out(r)
                if overdue:
                    conn.execute(Q["reject_orphans"], {"ids": [str(r.message_id) for r in overdue]})
                if again:
                    conn.execute(Q["requeue_orphans"], {"ids": [str(r.message_id) for r in again]})
                result.timed_out += len(overdue)
                result.requeued += len(again)
            if len(rows) < self.config.batch_size:
                break
        result.duration_s = time.monotonic() - started
        if result.requeued or result.timed_out:
            logger.warning(
                "rescue%s: %d messages of dead workers back in their queue, %d members timed out",
                " (dry run)" if dry_run else "",
                result.requeued,
                result.timed_out,
            )
        return result

    def _overdue(self, row, now: datetime) -> bool:
        if row.actor_name != MEMBER_ACTOR:
            return False
        limit_ms = (row.options or {}).get("time_limit")
        if not limit_ms:
            return False
        deadline = (
            row.claimed_at
            + timedelta(milliseconds=limit_ms)
            + timedelta(seconds=self.config.member_grace_s)
        )
        return now > deadline

    def _time_out(self, row) -> None:
        from .. import runs

        run_id, test_id = row.args
        limit_s = (row.options or {}).get("time_limit", 0) / 1000
        runs.record_outcome(
            run_id,
            test_id,
            status="error",
            error=f"timed out: its worker stopped answering and it ran past its time limit "
            f"of {limit_s:g}s",
            attempts=(row.options or {}).get("retries", 0) + 1,
        )
