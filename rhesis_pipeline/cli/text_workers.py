"""Workers as text: ``rhesis-monitor workers`` and the WORKERS part of ``status``.

Every function returns the text (no trailing newline) and prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rhesis_pipeline.runs.durations import format_seconds
from rhesis_pipeline.runs.report import table

if TYPE_CHECKING:
    from rhesis_pipeline.monitor.workers import Claim, WorkerInfo, WorkerListing


def short_id(worker_id: str | None) -> str:
    """The first 8 characters of a worker's id, enough to tell workers apart; "-" if none."""
    return worker_id[:8] if worker_id else "-"


def worker_counts(listing: WorkerListing) -> str:
    """``N live, N stopped, N dead``."""
    return f"{len(listing.live)} live, {len(listing.stopped)} stopped, {len(listing.dead)} dead"


def workers_table(workers: Sequence[WorkerInfo]) -> str:
    """One row a worker: name (host:pid), id, state, queues, heartbeat age, messages held."""
    return table(
        [
            [
                w.name,
                short_id(w.worker_id),
                w.state,
                ",".join(w.queues),
                format_seconds(w.heartbeat_age_s),
                str(len(w.claims)),
            ]
            for w in workers
        ],
        ["WORKER", "ID", "STATE", "QUEUES", "HEARTBEAT", "RUNNING"],
    )


def workers_text(listing: WorkerListing) -> str:
    """``rhesis-monitor workers``: every registered worker, then what each is running
    (messages claimed by no registered worker last)."""
    lines = [f"WORKERS ({worker_counts(listing)})"]
    if not listing.workers:
        lines.append("none registered")
        return "\n".join(lines)
    lines.append(workers_table(listing.workers))
    running: list[tuple[WorkerInfo | None, Claim]] = [
        (w, c) for w in listing.workers for c in w.claims
    ]
    running += [(None, c) for c in listing.unowned]
    if running:
        lines += ["", "RUNNING"]
        lines.append(
            table(
                [
                    [
                        w.name if w else "(no registered worker)",
                        c.actor or "-",
                        c.run_id or "-",
                        c.test_id or "-",
                        c.queue,
                        format_seconds(c.age_s),
                    ]
                    for w, c in running
                ],
                ["WORKER", "ACTOR", "RUN", "TEST", "QUEUE", "FOR"],
            )
        )
    return "\n".join(lines)
