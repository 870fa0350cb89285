"""Retention of the queue table: deletes done and rejected messages after a while.

dramatiq-pg deletes them only on a random 1-in-100,000 idle tick of a consumer, so the
``dramatiq.queue`` table grows without bound on a busy system.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .. import db
from ..queries import Q

logger = logging.getLogger(__name__)

#: Advisory lock key of this job (fixed, project-specific).
LOCK_KEY = 0x52485349_0101


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class PurgeConfig:
    """Settings of :class:`PurgeFinishedMessages`.

    retention: how long done/rejected messages are kept after their last change.
        Zero purges every finished message.
    batch_size: rows deleted per transaction (1 to 100,000).
    pause_s: seconds between batches, jittered by +/-50 %, so the purge yields to
        the workers on a large backlog. 0 disables the pause.
    max_batches: batches in one run at most; the next run continues.
    """

    retention: timedelta = timedelta(days=7)
    batch_size: int = 1000
    pause_s: float = 0.05
    max_batches: int = 1000

    def __post_init__(self) -> None:
        if self.retention < timedelta(0):
            raise ValueError(f"retention must not be negative, got {self.retention}")
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch_size must be 1..100000, got {self.batch_size}")
        if self.pause_s < 0:
            raise ValueError(f"pause_s must not be negative, got {self.pause_s}")
        if self.max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {self.max_batches}")


@dataclass
class PurgeResult:
    deleted: int = 0
    batches: int = 0
    skipped: bool = False  # another purge held the lock
    duration_s: float = 0.0


@dataclass
class PurgeFinishedMessages:
    config: PurgeConfig = field(default_factory=PurgeConfig)
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    def run_once(self) -> PurgeResult:
        """Delete finished messages older than the retention, batch by batch."""
        started = time.monotonic()
        result = PurgeResult()
        cutoff = self.clock() - self.config.retention
        while result.batches < self.config.max_batches:
            with db.begin() as conn:
                if not conn.execute(Q["try_maintenance_lock"], {"key": LOCK_KEY}).scalar():
                    result.skipped = True
                    break
                deleted = conn.execute(
                    Q["purge_finished_messages"],
                    {"cutoff": cutoff, "batch": self.config.batch_size},
                ).rowcount
            result.batches += 1
            result.deleted += deleted
            if deleted < self.config.batch_size:
                break
            if self.config.pause_s:
                self.sleep(self.config.pause_s * random.uniform(0.5, 1.5))
        result.duration_s = time.monotonic() - started
        logger.info(
            "purge: deleted %d finished messages older than %s in %d batches (%.2fs)%s",
            result.deleted,
            cutoff.isoformat(timespec="seconds"),
            result.batches,
            result.duration_s,
            "; another purge is running" if result.skipped else "",
        )
        return result
