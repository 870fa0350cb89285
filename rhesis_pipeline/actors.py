"""Entry point of workers and of the scheduler.

    dramatiq rhesis_pipeline.actors      # workers (or bin/worker)
    periodiq rhesis_pipeline.actors      # scheduler (or bin/scheduler, which sets TZ=UTC)

Importing this module installs the rhesis-pipeline broker as dramatiq's global broker and
declares every actor. It does not connect to the database: the pool connects on first
use.
"""

from __future__ import annotations

from datetime import timedelta

import dramatiq
from periodiq import cron

from . import db, queues
from .broker import build_broker
from .maintenance import PurgeConfig, PurgeFinishedMessages

broker = build_broker()
dramatiq.set_broker(broker)


def _settings():
    return db.settings()


@dramatiq.actor(
    queue_name=queues.MAINTENANCE,
    periodic=cron(_settings().purge_cron),
    max_retries=0,
    time_limit=10 * 60 * 1000,
)
def purge_finished_messages() -> None:
    """Delete done and rejected queue rows older than RHESIS_QUEUE_RETENTION_HOURS."""
    retention = timedelta(hours=db.settings().queue_retention_hours)
    PurgeFinishedMessages(PurgeConfig(retention=retention)).run_once()
