"""Unfinished and stuck runs.

A run is **stuck** after a threshold H when it has been QUEUED or IN_PROGRESS for H or
longer, or has made no progress (no test outcome stored) for H or longer. With H = 0
every unfinished run is stuck. Ages are measured by the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import db
from ..queries import Q
from .common import iso, seconds

#: Most runs one listing returns (counts are exact regardless).
DEFAULT_LIMIT = 1000


def hours_to_seconds(hours: float) -> float:
    if hours < 0:
        raise ValueError(f"a threshold in hours must be 0 or more, got {hours:g}")
    return hours * 3600.0


@dataclass
class ActiveRun:
    run_id: str
    name: str
    status: str
    organization_id: str | None
    user_id: str | None
    total: int
    done: int
    passed: int
    failed: int
    errored: int
    lost: int
    cancelled: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    last_progress_at: datetime | None
    age_s: float  # since creation
    in_status_s: float  # since it became QUEUED (creation) or IN_PROGRESS (start)
    idle_s: float  # since its last progress (or since it started or was created)
    stuck: bool

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 1) if self.total else 100.0

    @property
    def reason(self) -> str:
        """Why it counts as stuck, e.g. "in progress for 3h12m, no progress for 45m"."""
        from ..report import format_seconds

        verb = "queued" if self.status == "QUEUED" else "in progress"
        text = f"{verb} for {format_seconds(self.in_status_s)}"
        if self.status == "IN_PROGRESS" and self.last_progress_at is not None:
            text += f", last progress {format_seconds(self.idle_s)} ago"
        elif self.status == "IN_PROGRESS":
            text += ", no test finished yet"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "name": self.name,
            "status": self.status,
            "organization_id": self.organization_id,
            "user_id": self.user_id,
            "total": self.total,
            "done": self.done,
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "lost": self.lost,
            "cancelled": self.cancelled,
            "percent": self.percent,
            "cancel_requested": self.cancel_requested,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "last_progress_at": iso(self.last_progress_at),
            "age_s": self.age_s,
            "idle_s": self.idle_s,
            "stuck": self.stuck,
            "reason": self.reason,
        }


@dataclass
class RunListing:
    runs: list[ActiveRun]
    matching: int  # rows that matched, of which `runs` holds the first `limit`
    stuck: int  # stuck runs among the matching ones


def unfinished_runs(
    *,
    max_hours: float,
    only_stuck: bool = False,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> RunListing:
    """Unfinished runs, oldest first, each flagged stuck or not after *max_hours*.

    now: the time to measure ages from (default: the database's clock); for tests.
    """
    params = {
        "max_age_s": hours_to_seconds(max_hours),
        "only_stuck": only_stuck,
        "limit": limit,
        "now": now,
    }
    with db.connect() as conn:
        rows = conn.execute(Q["unfinished_runs"], params).all()
    runs = [
        ActiveRun(
            run_id=str(r.run_id),
            name=r.name,
            status=r.status,
            organization_id=r.organization_id,
            user_id=r.user_id,
            total=r.total,
            done=r.done,
            passed=r.passed,
            failed=r.failed,
            errored=r.errored,
            lost=r.lost,
            cancelled=r.cancelled,
            cancel_requested=r.cancel_requested,
            created_at=r.created_at,
            started_at=r.started_at,
            last_progress_at=r.last_progress_at,
            age_s=seconds(r.age_s) or 0.0,
            in_status_s=seconds(r.in_status_s) or 0.0,
            idle_s=seconds(r.idle_s) or 0.0,
            stuck=bool(r.stuck),
        )
        for r in rows
    ]
    matching = int(rows[0].matching) if rows else 0
    stuck = int(rows[0].stuck_total) if rows else 0
    return RunListing(runs=runs, matching=matching, stuck=stuck)


def find_stuck_runs(
    max_hours: float, *, limit: int = DEFAULT_LIMIT, now: datetime | None = None
) -> list[ActiveRun]:
    """Runs stuck after *max_hours* (see the module's docstring), oldest first."""
    return unfinished_runs(max_hours=max_hours, only_stuck=True, limit=limit, now=now).runs
