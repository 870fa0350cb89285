"""Queues as the operator sees them: messages by state, the oldest waiting one, and how
many live workers consume each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.monitor.workers import WorkerListing
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

STATES = ("queued", "consumed", "rejected", "done")


@dataclass
class QueueStats:
    queue: str
    queued: int = 0
    consumed: int = 0
    rejected: int = 0
    done: int = 0
    #: Age in seconds of the oldest waiting message (None: nothing waits). For a delay
    #: queue (``<name>.DQ``) that is the time since the delayed message was enqueued.
    oldest_queued_age_s: float | None = None
    #: Live workers consuming this queue (a delay queue counts as its base queue).
    consumers: int = 0

    @property
    def waiting_without_consumer(self) -> bool:
        return self.queued > 0 and self.consumers == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "queued": self.queued,
            "consumed": self.consumed,
            "rejected": self.rejected,
            "done": self.done,
            "oldest_queued_age_s": self.oldest_queued_age_s,
            "consumers": self.consumers,
        }


def queue_stats(workers: WorkerListing, *, organization_id: str | None = None) -> list[QueueStats]:
    """Every queue that holds a message, plus every queue a live worker consumes.

    organization_id: count only that organization's messages, read as its tenant.
    """
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["queue_stats"]).all()
    stats: dict[str, QueueStats] = {}
    for row in rows:
        entry = stats.setdefault(row.queue_name, QueueStats(row.queue_name))
        if row.state in STATES:
            setattr(entry, row.state, int(row.messages))
        if row.state == "queued" and row.oldest_age_s is not None:
            entry.oldest_queued_age_s = round(float(row.oldest_age_s), 3)
    for worker in workers.live:
        for name in worker.queues:
            stats.setdefault(name, QueueStats(name))
    for entry in stats.values():
        entry.consumers = len(workers.consumers(entry.queue))
    return [stats[name] for name in sorted(stats)]
