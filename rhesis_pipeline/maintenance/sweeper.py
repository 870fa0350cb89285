"""The sweeper: every maintenance service, once, one sweep at a time.

Run by the periodic ``sweep`` actor (``RHESIS_SWEEP_CRON``, default every minute, UTC)
and by ``rhesis-monitor sweep``. A sweep holds a session advisory lock for its duration:
a second sweep started meanwhile returns at once, saying so (two schedulers running by
mistake, an operator sweeping by hand). Each step is idempotent, so a second sweep right
after the first changes nothing. Time is injectable (``clock``) for tests.

Steps: rescue orphans of dead workers, expire overdue runs, retention. (Every worker
process also runs the rescuer in a thread of its own, every heartbeat interval; the sweep
covers the case where no worker is alive to do it.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rhesis_pipeline.maintenance.expire import ExpireConfig, ExpireOverdueRuns
from rhesis_pipeline.maintenance.rescue import RescueConfig, Rescuer
from rhesis_pipeline.maintenance.retention import Retention, RetentionConfig
from rhesis_pipeline.maintenance.service import Service, utcnow
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.locks import SWEEP_LOCK_KEY
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What one sweep did, summed over its steps (``duration_s`` in seconds)."""

    ran: bool = True  # False: another sweep held the lock
    dry_run: bool = False
    rescued: int = 0
    timed_out: int = 0
    crashed: int = 0
    expired_runs: int = 0
    lost: int = 0
    purged_messages: int = 0
    purged_rate_limit_keys: int = 0
    purged_workers: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sweeper(Service):
    """Runs every maintenance service once, under the sweep's session lock."""

    clock: Callable[[], datetime] = utcnow
    rescue: RescueConfig = field(default_factory=RescueConfig)
    expire: ExpireConfig = field(default_factory=ExpireConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @classmethod
    def from_settings(cls, clock: Callable[[], datetime] = utcnow) -> Sweeper:
        s = engine.settings()
        return cls(
            clock=clock,
            rescue=RescueConfig.from_settings(),
            expire=ExpireConfig(max_age=timedelta(hours=s.run_max_age_hours)),
            retention=RetentionConfig(
                message_retention=timedelta(hours=s.queue_retention_hours),
                worker_retention=timedelta(hours=s.worker_retention_hours),
                run_retention=(
                    timedelta(hours=s.run_retention_hours) if s.run_retention_hours else None
                ),
            ),
        )

    def run_once(self, *, dry_run: bool = False) -> SweepResult:
        started = time.monotonic()
        result = SweepResult(dry_run=dry_run)
        with db.connect() as conn:
            if not conn.execute(Q["try_sweep_lock"], {"key": SWEEP_LOCK_KEY}).scalar():
                conn.rollback()
                result.ran = False
                logger.info("sweep: another sweep is running; nothing done")
                return result
            conn.commit()
            try:
                rescued = Rescuer(self.rescue, clock=self.clock).run_once(dry_run=dry_run)
                expired = ExpireOverdueRuns(self.expire, clock=self.clock).run_once(dry_run=dry_run)
                kept = Retention(self.retention, clock=self.clock).run_once(dry_run=dry_run)
            finally:
                conn.execute(Q["release_sweep_lock"], {"key": SWEEP_LOCK_KEY})
                conn.commit()
        result.rescued, result.timed_out = rescued.requeued, rescued.timed_out
        result.crashed = rescued.crashed
        result.expired_runs, result.lost = expired.runs, expired.lost
        result.purged_messages = kept.messages
        result.purged_rate_limit_keys = kept.rate_limit_keys
        result.purged_workers = kept.workers
        result.duration_s = round(time.monotonic() - started, 3)
        logger.info(
            "sweep%s: rescued %d, timed out %d, expired %d runs (%d tests lost), purged %d "
            "messages, %d rate-limit keys, %d workers in %.2fs",
            " (dry run)" if dry_run else "",
            result.rescued,
            result.timed_out,
            result.expired_runs,
            result.lost,
            result.purged_messages,
            result.purged_rate_limit_keys,
            result.purged_workers,
            result.duration_s,
        )
        return result
