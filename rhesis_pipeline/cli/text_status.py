"""The state of the system as text: ``rhesis-monitor status``, ``health``, and the
findings (problems, warnings, recommendations) that ``fix`` ends with.

Every function returns the text (no trailing newline) and prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rhesis_pipeline.cli.text_runs import runs_table
from rhesis_pipeline.cli.text_workers import worker_counts, workers_table
from rhesis_pipeline.monitor.diagnosis import PROBLEM
from rhesis_pipeline.runs.durations import format_seconds
from rhesis_pipeline.runs.report import table

if TYPE_CHECKING:
    from rhesis_pipeline.monitor.diagnosis import Finding
    from rhesis_pipeline.monitor.endpoints import EndpointStats
    from rhesis_pipeline.monitor.fix import FixReport
    from rhesis_pipeline.monitor.health import HealthReport
    from rhesis_pipeline.monitor.queues import QueueStats
    from rhesis_pipeline.monitor.status import Status


def findings_lines(findings: Sequence[Finding], heading: str) -> list[str]:
    """A blank line, *heading*, then each finding ("!" a problem, "-" a warning) with its
    recommendation; no lines when there is no finding."""
    if not findings:
        return []
    lines = ["", heading]
    for f in findings:
        mark = "!" if f.severity == PROBLEM else "-"
        lines.append(f"{mark} {f.message}")
        lines.append(f"    -> {f.recommendation}")
    return lines


def status_text(current: Status, organization_id: str | None = None) -> str:
    """``rhesis-monitor status``: runs by status, active runs, queues, tenants, endpoint
    limits, live workers, stuck runs and warnings."""
    s = current.snapshot
    of = f" of organization {organization_id}" if organization_id else ""
    lines = [f"rhesis-monitor status{of} at {current.checked_at:%Y-%m-%d %H:%M:%S} UTC", ""]
    lines.append(
        "RUNS  "
        + "  ".join(f"{k.lower().replace('_', ' ')} {v}" for k, v in s.runs_by_status.items())
    )
    lines.append("")
    shown = "" if s.runs.matching <= len(s.runs.runs) else f", oldest {len(s.runs.runs)} shown"
    lines.append(f"ACTIVE RUNS ({s.runs.matching}{shown})")
    lines.append(runs_table(s.runs.runs) if s.runs.runs else "none")
    lines.append("")
    lines.append("QUEUES")
    lines.append(_queues_table(s.queues) if s.queues else "none")
    lines.append("")
    lines.append("TENANTS (tests waiting and running, per organization)")
    if s.tenants:
        lines.append(
            table(
                [
                    [org or "(none)", str(waiting), str(running)]
                    for org, waiting, running in s.tenants
                ],
                ["ORGANIZATION", "WAITING", "RUNNING"],
            )
        )
    else:
        lines.append("none")
    if s.endpoints:
        lines.append("")
        lines.append("ENDPOINTS (limits shared by every worker)")
        lines.append(_endpoints_table(s.endpoints))
    lines.append("")
    lines.append(f"WORKERS ({worker_counts(s.workers)})")
    if s.workers.live:
        lines.append(workers_table(s.workers.live))
    lines.append("")
    lines.append(
        f"STUCK RUNS: {s.runs.stuck} (queued or in progress for {s.max_hours:g}h or more, "
        "or without progress for that long)"
    )
    lines += findings_lines(current.findings, "WARNINGS")
    if not current.findings:
        lines += ["", "WARNINGS: none"]
    return "\n".join(lines)


def _queues_table(queues: Sequence[QueueStats]) -> str:
    return table(
        [
            [
                q.queue,
                str(q.queued),
                str(q.consumed),
                str(q.rejected),
                str(q.done),
                format_seconds(q.oldest_queued_age_s),
                str(q.consumers),
            ]
            for q in queues
        ],
        ["QUEUE", "QUEUED", "CONSUMED", "REJECTED", "DONE", "OLDEST QUEUED", "CONSUMERS"],
    )


def _endpoints_table(endpoints: Sequence[EndpointStats]) -> str:
    return table(
        [
            [
                e.key,
                str(e.in_flight),
                f"{round(e.current_limit, 1):g}/{e.max_concurrency}"
                + ("" if e.declared else " (default)"),
                str(e.requests_per_minute or "-"),
                str(e.waiting),
                f"{e.paused_for_s:.1f}s" if e.paused_for_s else "-",
                str(e.throttled_last_minute),
            ]
            for e in endpoints
        ],
        ["KEY", "IN FLIGHT", "LIMIT/MAX", "RPM", "WAITING", "PAUSED", "429s/MIN"],
    )


def health_text(report: HealthReport) -> str:
    """``rhesis-monitor health``: healthy or not, then the problems and the warnings."""
    if report.healthy:
        lines = [
            f"healthy: {report.live_workers} live workers, no stuck runs "
            f"(threshold {report.max_hours:g}h)"
        ]
    else:
        lines = [f"unhealthy: {len(report.problems)} problems"]
    lines += findings_lines(report.problems, "PROBLEMS")[1:]
    lines += findings_lines(report.warnings, "WARNINGS")
    return "\n".join(lines)


def recommendations_text(report: FixReport) -> str:
    """The end of ``rhesis-monitor fix``: what to do next, or that nothing is needed."""
    if not report.recommendations:
        return "RECOMMENDATIONS: none; everything looks fine"
    return "\n".join(findings_lines(report.recommendations, "RECOMMENDATIONS")[1:])
