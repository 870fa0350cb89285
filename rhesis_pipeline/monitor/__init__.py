"""Operating rhesis-pipeline: the library behind ``rhesis-monitor``.

Every command of the CLI calls one of these, which a web backend or a script can call
as well::

    from rhesis_pipeline.monitor import check_health, find_stuck_runs, revoke_runs

    report = check_health()                      # HealthReport: .healthy, .problems
    for run in find_stuck_runs(max_hours=2):     # Run: .id, .reason …
        ...
    revoke_runs([run_id])                        # [RevokeOutcome]

Modules: :mod:`.status` (snapshot), :mod:`.stuck`, :mod:`.revoke`, :mod:`.fix` (the
policy of ``fix``), :mod:`.clean`, :mod:`.inspect`, :mod:`.workers`, :mod:`.queues`,
:mod:`.diagnosis` (findings and recommendations), :mod:`.health`, :mod:`.http`
(serve-health).
"""

from __future__ import annotations

from rhesis_pipeline.monitor.clean import CleanResult, clean_queues
from rhesis_pipeline.monitor.diagnosis import Finding, diagnose
from rhesis_pipeline.monitor.fix import (
    FixPlan,
    FixReport,
    apply_fix,
    plan_fix,
    recommendations_after,
)
from rhesis_pipeline.monitor.health import HealthReport, check_health
from rhesis_pipeline.monitor.inspect import RunInspection, inspect_run
from rhesis_pipeline.monitor.queues import QueueStats, queue_stats
from rhesis_pipeline.monitor.revoke import RevokeOutcome, revoke_runs, revoke_stuck_runs
from rhesis_pipeline.monitor.status import Status, status
from rhesis_pipeline.monitor.stuck import find_stuck_runs, unfinished_runs
from rhesis_pipeline.monitor.workers import WorkerInfo, WorkerListing, list_workers
from rhesis_pipeline.runs.ids import InvalidRunId

__all__ = [
    "CleanResult",
    "Finding",
    "FixPlan",
    "FixReport",
    "HealthReport",
    "InvalidRunId",
    "QueueStats",
    "RevokeOutcome",
    "RunInspection",
    "Status",
    "WorkerInfo",
    "WorkerListing",
    "apply_fix",
    "check_health",
    "clean_queues",
    "diagnose",
    "find_stuck_runs",
    "inspect_run",
    "list_workers",
    "plan_fix",
    "queue_stats",
    "recommendations_after",
    "revoke_runs",
    "revoke_stuck_runs",
    "status",
    "unfinished_runs",
]
