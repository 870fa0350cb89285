"""Unfinished and stuck runs.

A run is **stuck** after a threshold H when it has been QUEUED or IN_PROGRESS for H or
longer, or has made no progress (no test outcome stored) for H or longer. With H = 0
every unfinished run is stuck. Ages are measured by the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rhesis_pipeline.monitor.common import seconds
from rhesis_pipeline.runs.record import MONITOR_FIELDS, Run
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

#: Most runs one listing returns (counts are exact regardless).
DEFAULT_LIMIT = 1000


def hours_to_seconds(hours: float) -> float:
    if hours < 0:
        raise ValueError(f"a threshold in hours must be 0 or more, got {hours:g}")
    return hours * 3600.0


@dataclass
class RunListing:
    """Unfinished runs (:class:`~rhesis_pipeline.runs.record.Run` with age_s, in_status_s,
    idle_s and stuck filled; ``as_dict()`` gives the "run" object of docs/reference/json.md,
    MONITOR_FIELDS), oldest first."""

    runs: list[Run]
    matching: int  # rows that matched, of which `runs` holds the first `limit`
    stuck: int  # stuck runs among the matching ones


def unfinished_runs(
    *,
    max_hours: float,
    only_stuck: bool = False,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
    organization_id: str | None = None,
) -> RunListing:
    """Unfinished runs, oldest first, each flagged stuck or not after *max_hours*.

    now: the time to measure ages from (default: the database's clock); for tests.
    organization_id: only that organization's runs, read as its tenant (row-level
    security, not a filter of this query).
    """
    params = {
        "max_age_s": hours_to_seconds(max_hours),
        "only_stuck": only_stuck,
        "limit": limit,
        "now": now,
    }
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["unfinished_runs"], params).all()
    runs = [
        Run.from_row(
            r._mapping,
            age_s=seconds(r.age_s) or 0.0,
            in_status_s=seconds(r.in_status_s) or 0.0,
            idle_s=seconds(r.idle_s) or 0.0,
            stuck=bool(r.stuck),
            json_fields=MONITOR_FIELDS,
        )
        for r in rows
    ]
    matching = int(rows[0].matching) if rows else 0
    stuck = int(rows[0].stuck_total) if rows else 0
    return RunListing(runs=runs, matching=matching, stuck=stuck)


def find_stuck_runs(
    max_hours: float,
    *,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
    organization_id: str | None = None,
) -> list[Run]:
    """Runs stuck after *max_hours* (see the module's docstring), oldest first (of
    organization *organization_id* only, read as its tenant, if given)."""
    return unfinished_runs(
        max_hours=max_hours,
        only_stuck=True,
        limit=limit,
        now=now,
        organization_id=organization_id,
    ).runs
