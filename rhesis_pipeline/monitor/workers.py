"""Workers as the operator sees them: alive or dead, their queues, what each holds.

"Alive" is the rescuer's definition (:mod:`rhesis_pipeline.worker.registry`): not stopped,
heartbeat within ``RHESIS_HEARTBEAT_TIMEOUT_S``, and still holding its liveness lock.
What a worker "runs" is the messages it has claimed (``rhesis.claims``): the member
executing now plus any it has prefetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dramatiq.common import q_name
from sqlalchemy.engine import Row

from rhesis_pipeline.monitor.common import iso, seconds
from rhesis_pipeline.runs.states import WorkerState, worker_state
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.locks import WORKER_LOCK_CLASS
from rhesis_pipeline.storage.queries import Q


@dataclass
class Claim:
    """A consumed message and who holds it (worker_id None: no claim was recorded)."""

    message_id: str
    queue: str
    actor: str | None
    run_id: str | None
    test_id: str | None
    worker_id: str | None
    claimed_at: datetime | None
    age_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "queue": self.queue,
            "actor": self.actor,
            "run_id": self.run_id,
            "test_id": self.test_id,
            "claimed_at": iso(self.claimed_at),
            "age_s": self.age_s,
        }


@dataclass
class WorkerInfo:
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    alive: bool
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    stopped_at: datetime | None
    lock_held: bool = True  # False while it reconnects after a connection loss (or dead)
    claims: list[Claim] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def state(self) -> WorkerState:
        """live, reconnecting, stopped or dead (:mod:`rhesis_pipeline.runs.states`)."""
        return worker_state(alive=self.alive, lock_held=self.lock_held, stopped_at=self.stopped_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "state": self.state.value,
            "alive": self.alive,
            "lock_held": self.lock_held,
            "queues": self.queues,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "heartbeat_age_s": self.heartbeat_age_s,
            "stopped_at": iso(self.stopped_at),
            "running": [c.as_dict() for c in self.claims],
        }


@dataclass
class WorkerListing:
    workers: list[WorkerInfo]
    #: Consumed messages held by no registered worker (no claim row, or its worker's
    #: row is gone).
    unowned: list[Claim]

    @property
    def live(self) -> list[WorkerInfo]:
        return [w for w in self.workers if w.alive]

    @property
    def dead(self) -> list[WorkerInfo]:
        """Workers that died without stopping (not those that stopped cleanly)."""
        return [w for w in self.workers if w.state == WorkerState.DEAD]

    @property
    def stopped(self) -> list[WorkerInfo]:
        return [w for w in self.workers if w.state == WorkerState.STOPPED]

    @property
    def gone(self) -> list[WorkerInfo]:
        """Workers no longer running: stopped or dead."""
        return [w for w in self.workers if not w.alive]

    def consumers(self, queue: str) -> list[WorkerInfo]:
        """Live workers that consume *queue* (a delay queue counts as its base queue)."""
        base = q_name(queue)
        return [w for w in self.live if base in w.queues]

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": len(self.live),
            "stopped": len(self.stopped),
            "dead": len(self.dead),
            "workers": [w.as_dict() for w in self.workers],
            "unowned": [c.as_dict() for c in self.unowned],
        }


def _claim(row: Row[Any]) -> Claim:
    args = row.args if isinstance(row.args, list) else []
    return Claim(
        message_id=str(row.message_id),
        queue=row.queue_name,
        actor=row.actor_name,
        run_id=str(args[0]) if len(args) > 0 else None,
        test_id=str(args[1]) if len(args) > 1 else None,
        worker_id=None if row.worker_id is None else str(row.worker_id),
        claimed_at=row.claimed_at,
        age_s=seconds(row.age_s),
    )


def list_workers(*, limit: int = 500, claims_limit: int = 10_000) -> WorkerListing:
    """Registered workers (newest first, at most *limit*; dead ones are kept for
    ``RHESIS_WORKER_RETENTION_HOURS``), each with the messages it holds."""
    settings = engine.settings()
    with db.connect() as conn:
        rows = conn.execute(
            Q["list_workers"],
            {
                "timeout_s": settings.heartbeat_timeout_s,
                "lock_grace_s": settings.lock_grace_s,
                "lock_class": WORKER_LOCK_CLASS,
                "limit": limit,
            },
        ).all()
        claim_rows = conn.execute(Q["list_claims"], {"limit": claims_limit}).all()
    workers = [
        WorkerInfo(
            worker_id=str(r.worker_id),
            host=r.host,
            pid=r.pid,
            queues=list(r.queues),
            alive=bool(r.alive),
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            heartbeat_age_s=seconds(r.heartbeat_age_s) or 0.0,
            stopped_at=r.stopped_at,
            lock_held=bool(r.lock_held),
        )
        for r in rows
    ]
    by_id = {w.worker_id: w for w in workers}
    unowned: list[Claim] = []
    for row in claim_rows:
        claim = _claim(row)
        owner = by_id.get(claim.worker_id) if claim.worker_id else None
        (owner.claims if owner else unowned).append(claim)
    return WorkerListing(workers=workers, unowned=unowned)
