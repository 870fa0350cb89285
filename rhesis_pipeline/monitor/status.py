"""The whole picture at once: runs, queues, workers, stuck runs and warnings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rhesis_pipeline.monitor.common import iso
from rhesis_pipeline.monitor.diagnosis import (
    Finding,
    FindingsView,
    Snapshot,
    StalledCallback,
    TenantLoad,
    diagnose,
)
from rhesis_pipeline.monitor.endpoints import endpoint_stats
from rhesis_pipeline.monitor.queues import QueueStats, queue_stats
from rhesis_pipeline.monitor.stuck import unfinished_runs
from rhesis_pipeline.monitor.workers import list_workers
from rhesis_pipeline.runs.messages import MEMBER
from rhesis_pipeline.runs.states import RunStatus
from rhesis_pipeline.storage import engine, tenancy
from rhesis_pipeline.storage.queries import Q

#: Most organizations listed by status (the busiest).
TENANTS_SHOWN = 50

#: Every run status, in the order of a run's life (how status and the dashboard list them).
RUN_STATUSES = tuple(RunStatus)


@dataclass
class Status(FindingsView):
    checked_at: datetime
    snapshot: Snapshot
    findings: list[Finding]

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "checked_at": iso(self.checked_at),
            "max_hours": s.max_hours,
            "runs": {
                "by_status": s.runs_by_status,
                "unfinished": s.runs.matching,
                "stuck": s.runs.stuck,
                "active": [r.as_dict() for r in s.runs.runs],
            },
            "queues": [q.as_dict() for q in s.queues],
            "tenants": [
                {
                    "organization_id": load.organization_id or None,
                    "waiting": load.waiting,
                    "running": load.running,
                }
                for load in s.tenants
            ],
            "workers": {
                "live": len(s.workers.live),
                "stopped": len(s.workers.stopped),
                "dead": len(s.workers.dead),
                "list": [
                    {
                        "worker_id": w.worker_id,
                        "host": w.host,
                        "pid": w.pid,
                        "state": w.state.value,
                        "queues": w.queues,
                        "heartbeat_age_s": w.heartbeat_age_s,
                        "running": len(w.claims),
                    }
                    for w in s.workers.live
                ],
            },
            "endpoints": [e.as_dict() for e in s.endpoints],
            "warnings": [f.as_dict() for f in self.findings],
        }


def take_snapshot(
    *, max_hours: float = 2.0, active_limit: int = 50, organization_id: str | None = None
) -> Snapshot:
    """Read runs, queues and workers (a few queries; no locks taken).

    organization_id: runs and queue messages of that organization only, read as its
    tenant (row-level security); workers are the system's, shown whole.
    """
    with tenancy.connect(organization_id) as conn:
        by_status = {s.value: 0 for s in RUN_STATUSES}
        by_status.update({row.status: int(row.runs) for row in conn.execute(Q["runs_by_status"])})
        stalled = [
            StalledCallback(str(r.run_id), r.name, r.callback_state)
            for r in conn.execute(Q["stalled_callbacks"], {"limit": 100})
        ]
        # A tenant sees only its own messages: its load is in the queue counts below,
        # and a second scan of the queue under row-level security would double the cost.
        tenants = (
            [
                TenantLoad(r.organization, int(r.waiting), int(r.running))
                for r in conn.execute(
                    Q["tenant_load"], {"queue_name": MEMBER.queue_name, "limit": TENANTS_SHOWN}
                )
            ]
            if organization_id is None
            else []
        )
        autovacuum = bool(conn.execute(Q["server_autovacuum"]).scalar())
    workers = list_workers()
    queues = queue_stats(workers, organization_id=organization_id)
    if organization_id is not None:
        tenants = _own_load(organization_id, queues)
    return Snapshot(
        workers=workers,
        queues=queues,
        runs=unfinished_runs(
            max_hours=max_hours, limit=active_limit, organization_id=organization_id
        ),
        max_hours=max_hours,
        heartbeat_timeout_s=engine.settings().heartbeat_timeout_s,
        runs_by_status=by_status,
        stalled_callbacks=stalled,
        tenants=tenants,
        autovacuum=autovacuum,
        endpoints=endpoint_stats() if organization_id is None else [],
    )


def _own_load(organization_id: str, queues: list[QueueStats]) -> list[TenantLoad]:
    """What ``tenant_load`` reports for one organization, from its own queue counts."""
    members = [q for q in queues if q.queue in (MEMBER.queue_name, MEMBER.queue_name + ".DQ")]
    waiting = sum(q.queued for q in members)
    running = sum(q.consumed for q in members)
    return [TenantLoad(organization_id, waiting, running)] if waiting or running else []


def status(
    *, max_hours: float = 2.0, active_limit: int = 50, organization_id: str | None = None
) -> Status:
    """The system's status: what ``rhesis-monitor status`` shows.

    max_hours: the stuck threshold (see :mod:`.stuck`). active_limit: most unfinished
    runs listed (oldest first; the counts are exact). organization_id: see
    :func:`take_snapshot`.
    """
    checked_at = datetime.now(timezone.utc)
    snapshot = take_snapshot(
        max_hours=max_hours, active_limit=active_limit, organization_id=organization_id
    )
    return Status(checked_at=checked_at, snapshot=snapshot, findings=diagnose(snapshot))
