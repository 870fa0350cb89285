"""Retention: deletes what is no longer needed, in batches.

* Done and rejected queue rows older than the retention. dramatiq-pg deletes them only
  on a random 1-in-100,000 idle tick of a consumer, so ``dramatiq.queue`` grew without
  bound on a busy system.
* Expired rate-limit keys (barriers, limiters) of :mod:`rhesis_pipeline.worker.rate_limits`.
* Rows of workers stopped or silent for longer than the worker retention (and holding no
  claim: those are the rescuer's first).
* With a run retention (``RHESIS_RUN_RETENTION_HOURS``; default: runs are kept), runs
  finished longer ago than that, with their results: their result rows first, in
  batches, then the run rows whose results are gone. Without it ``test_runs`` and
  ``test_results`` grow with every run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from rhesis_pipeline.maintenance.service import run_batches
from rhesis_pipeline.storage.locks import RETENTION_LOCK_KEY
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class RetentionConfig:
    """Settings of :class:`Retention`.

    message_retention: how long done/rejected messages are kept after their last
        change. Zero purges every finished message.
    worker_retention: how long rows of dead workers are kept.
    batch_size: rows deleted per transaction (1 to 100,000).
    pause_s: seconds between batches, jittered by +/-50 %, so the purge yields to the
        workers on a large backlog. 0 disables the pause.
    max_batches: batches per step in one run at most; the next run continues.
    run_retention: how long finished runs (and their results) are kept; None keeps them.
    """

    message_retention: timedelta = timedelta(days=7)
    worker_retention: timedelta = timedelta(hours=24)
    batch_size: int = 1000
    pause_s: float = 0.05
    max_batches: int = 1000
    run_retention: timedelta | None = None

    def __post_init__(self) -> None:
        if self.message_retention < timedelta(0):
            raise ValueError(
                f"message_retention must not be negative, got {self.message_retention}"
            )
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch_size must be 1..100000, got {self.batch_size}")
        if self.pause_s < 0:
            raise ValueError(f"pause_s must not be negative, got {self.pause_s}")
        if self.max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {self.max_batches}")


@dataclass
class RetentionResult:
    messages: int = 0
    rate_limit_keys: int = 0
    workers: int = 0
    results: int = 0
    runs: int = 0
    batches: int = 0
    skipped: bool = False  # another run held the lock
    duration_s: float = 0.0


@dataclass
class Retention:
    config: RetentionConfig = field(default_factory=RetentionConfig)
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    _dry_run: bool = field(default=False, init=False, repr=False)

    def run_once(self, *, dry_run: bool = False) -> RetentionResult:
        """Delete finished messages past retention, expired rate-limit keys and dead
        workers' rows. With dry_run, count what would go (in a rolled-back transaction)."""
        started = time.monotonic()
        result = RetentionResult()
        now = self.clock()
        self._dry_run = dry_run
        result.messages = self._step(
            result, "purge_finished_messages", now - self.config.message_retention
        )
        if not result.skipped:
            result.rate_limit_keys = self._step(result, "purge_expired_rate_limits", now)
        if not result.skipped:
            result.workers = self._step(
                result, "purge_dead_workers", now - self.config.worker_retention
            )
        if not result.skipped and self.config.run_retention is not None:
            cutoff = now - self.config.run_retention
            result.results = self._step(result, "purge_retired_results", cutoff)
            if not result.skipped:
                result.runs = self._step(result, "purge_retired_runs", cutoff)
        result.duration_s = time.monotonic() - started
        logger.info(
            "retention: deleted %d finished messages, %d expired rate-limit keys, "
            "%d dead workers, %d results and %d runs in %d batches (%.2fs)%s",
            result.messages,
            result.rate_limit_keys,
            result.workers,
            result.results,
            result.runs,
            result.batches,
            result.duration_s,
            "; another run holds the lock, skipped" if result.skipped else "",
        )
        return result

    def _step(self, result: RetentionResult, query: str, cutoff: datetime) -> int:
        run = run_batches(
            lambda conn: (
                conn.execute(Q[query], {"cutoff": cutoff, "batch": self.config.batch_size}).rowcount
            ),
            lock_key=RETENTION_LOCK_KEY,
            batch_size=self.config.batch_size,
            max_batches=self.config.max_batches,
            dry_run=self._dry_run,
            pause_s=self.config.pause_s,
            sleep=self.sleep,
        )
        result.batches += run.batches
        result.skipped = result.skipped or run.skipped
        return run.total
