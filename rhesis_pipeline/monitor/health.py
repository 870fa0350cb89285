"""The health check: healthy or not, and why. A Python function first; the CLI's
``health`` and ``serve-health`` (HTTP 200/503 for Kubernetes probes) call it.

Unhealthy when the database cannot be used, or :func:`.diagnosis.diagnose` finds a
problem: no live worker, a queue with waiting messages and no consumer, stuck runs, an
orphan backlog. Warnings are reported but do not make it unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rhesis_pipeline.errors import ConfigurationError, RhesisError
from rhesis_pipeline.monitor.common import iso
from rhesis_pipeline.monitor.diagnosis import PROBLEM, Finding, FindingsView
from rhesis_pipeline.monitor.status import status
from rhesis_pipeline.storage import migrate


@dataclass
class HealthReport(FindingsView):
    checked_at: datetime
    max_hours: float
    findings: list[Finding] = field(default_factory=list)
    live_workers: int | None = None  # None: not known (database unusable)
    stuck_runs: int | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "status": "healthy" if self.healthy else "unhealthy",
            "checked_at": iso(self.checked_at),
            "max_hours": self.max_hours,
            "live_workers": self.live_workers,
            "stuck_runs": self.stuck_runs,
            "problems": [f.as_dict() for f in self.problems],
            "warnings": [f.as_dict() for f in self.warnings],
        }


def check_health(*, max_hours: float = 2.0) -> HealthReport:
    """Check the system; never raises for an unusable database (that is a reason).

    max_hours: runs stuck after this many hours make it unhealthy (see :mod:`.stuck`).
    Raises ConfigurationError only for invalid settings.
    """
    report = HealthReport(checked_at=datetime.now(timezone.utc), max_hours=max_hours)
    try:
        migrate.check_migrated()
        current = status(max_hours=max_hours, active_limit=1)
    except ConfigurationError:
        raise
    except RhesisError as exc:
        report.findings.append(
            Finding(
                "database_unreachable",
                PROBLEM,
                str(exc),
                "check DATABASE_URL, that the server is running and that "
                "`rhesis-pipeline migrate` has been run",
            )
        )
        return report
    report.findings = current.findings
    report.live_workers = len(current.snapshot.workers.live)
    report.stuck_runs = current.snapshot.runs.stuck
    return report
