"""Expiry of overdue runs: no run stays IN_PROGRESS forever.

A run older than ``max_age`` (``RHESIS_RUN_MAX_AGE_HOURS``, default 24 h) that still has
tests without an outcome gets those tests stored as ``lost``, through the normal outcome
path: they are counted like any outcome, so the last one enqueues the run's callback
exactly once and the run ends PARTIAL (or FAILED, if nothing executed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from rhesis_pipeline.maintenance.service import Service, run_batches, utcnow
from rhesis_pipeline.runs.outcomes import Outcome, write_batch
from rhesis_pipeline.storage.locks import EXPIRE_LOCK_KEY
from rhesis_pipeline.storage.queries import Q

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpireConfig:
    """max_age: age (from creation) after which a run's unfinished tests are lost.
    batch_size: tests marked per transaction. max_batches: per run_once (the next run
    continues)."""

    max_age: timedelta = timedelta(hours=24)
    batch_size: int = 1000
    max_batches: int = 1000

    def __post_init__(self) -> None:
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        if not 1 <= self.batch_size <= 100_000 or self.max_batches < 1:
            raise ValueError("batch_size must be 1..100000 and max_batches at least 1")


@dataclass
class ExpireResult:
    """What one :meth:`ExpireOverdueRuns.run_once` did: runs touched, tests stored as
    ``lost`` (counted, not stored, in a dry run), and how long it took in seconds."""

    runs: int = 0
    lost: int = 0
    duration_s: float = 0.0


@dataclass
class ExpireOverdueRuns(Service):
    """Stores the unfinished tests of runs older than ``config.max_age`` as ``lost``."""

    config: ExpireConfig = field(default_factory=ExpireConfig)
    clock: Callable[[], datetime] = utcnow

    def run_once(self, *, dry_run: bool = False) -> ExpireResult:
        started = time.monotonic()
        result = ExpireResult()
        cutoff = self.clock() - self.config.max_age
        runs_seen: set[str] = set()
        hours = self.config.max_age.total_seconds() / 3600

        def expire_batch(conn: Connection) -> int:
            rows = conn.execute(
                Q["overdue_tests"], {"cutoff": cutoff, "batch": self.config.batch_size}
            ).all()
            runs_seen.update(str(r.run_id) for r in rows)
            if dry_run or not rows:
                result.lost += len(rows)
                return len(rows)
            recorded = write_batch(
                [
                    Outcome(
                        str(r.run_id),
                        r.test_id,
                        "lost",
                        error=f"lost: the run was still unfinished after {hours:g}h "
                        "(RHESIS_RUN_MAX_AGE_HOURS)",
                    )
                    for r in rows
                ],
                conn,
            )
            conn.execute(Q["commit_synchronously"])
            result.lost += sum(1 for x in recorded if x.recorded)
            return len(rows)

        run_batches(
            expire_batch,
            lock_key=EXPIRE_LOCK_KEY,
            batch_size=self.config.batch_size,
            max_batches=self.config.max_batches,
            dry_run=dry_run,
        )
        result.runs = len(runs_seen)
        result.duration_s = time.monotonic() - started
        if result.lost:
            logger.warning(
                "expired %d overdue runs: %d tests lost%s",
                result.runs,
                result.lost,
                " (dry run)" if dry_run else "",
            )
        return result
