"""Repairs as text: what ``rhesis-monitor revoke``, ``fix``, ``clean`` and ``sweep`` did
or, in a dry run, would do.

Every function returns the text (no trailing newline) and prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rhesis_pipeline.runs.report import table

if TYPE_CHECKING:
    from rhesis_pipeline.maintenance.sweeper import SweepResult
    from rhesis_pipeline.monitor.clean import CleanResult
    from rhesis_pipeline.monitor.revoke import RevokeOutcome


def revoke_line(o: RevokeOutcome) -> str:
    """One run's revocation: what was done to it (messages removed, tests cancelled,
    callback enqueued) or why nothing was."""
    label = f"run {o.run_id}" + (f" ({o.name})" if o.name else "")
    if o.action == "not_found":
        return f"{label}: no such run"
    if o.action == "already_final":
        return f"{label}: already {o.status}; nothing to do"
    if o.action == "finishing":
        return f"{label}: every test has an outcome; its callback is pending; nothing to do"
    if o.action in ("callback_requeued", "would_requeue_callback"):
        verb = "enqueued" if o.action == "callback_requeued" else "would enqueue"
        return (
            f"{label}: every test has an outcome but its callback had failed for good; "
            f"{verb} it again"
        )
    verb = "would revoke" if o.action == "would_revoke" else "revoked"
    text = (
        f"{verb} {label}: {o.removed_messages} waiting messages removed, "
        f"{o.cancelled_tests} tests cancelled, {o.running_members} running members skipped"
    )
    if o.callback_enqueued:
        text += "; callback enqueued (the run becomes CANCELLED when a worker runs it)"
    return text


def revoke_text(outcomes: Sequence[RevokeOutcome], *, dry_run: bool) -> str:
    """``rhesis-monitor revoke``: a line per run, or that there was nothing to revoke."""
    if not outcomes:
        return "nothing to revoke"
    lines = [revoke_line(o) for o in outcomes]
    if dry_run:
        lines.append("dry run: nothing changed")
    return "\n".join(lines)


def clean_text(result: CleanResult, queue: str | None) -> str:
    """``rhesis-monitor clean``: the waiting messages deleted from *queue* (None: every
    queue) by queue and actor, the runs cancelled with them, the callbacks kept."""
    scope = f"queue {queue} (and {queue}.DQ)" if queue else "every queue"
    verb = "would delete" if result.dry_run else "deleted"
    lines = [f"{verb} {result.deleted} waiting messages from {scope}"]
    if result.messages:
        lines.append(
            table(
                [[m["queue"], m["actor"] or "-", str(m["messages"])] for m in result.messages],
                ["QUEUE", "ACTOR", "MESSAGES"],
            )
        )
    if result.cancelled_runs:
        verb_runs = "would cancel" if result.dry_run else "cancelled"
        lines.append(f"{verb_runs} {len(result.cancelled_runs)} runs whose members are removed:")
        lines += [f"  {run_id}" for run_id in result.cancelled_runs]
    if result.kept_callbacks:
        lines.append(f"kept {result.kept_callbacks} completion callbacks (their runs must finish)")
    return "\n".join(lines)


def sweep_text(result: SweepResult, *, batch: int) -> str:
    """One line: what the sweep did or, in a dry run, would do. A dry run counts one
    batch of *batch* rows of each purge only, so a full batch reads "at least N"."""
    if not result.ran:
        return "another sweep is running; this one did nothing"
    if not result.dry_run:
        return (
            f"rescued {result.rescued} messages of dead workers, timed out {result.timed_out}"
            f" tests, expired {result.expired_runs} runs ({result.lost} tests lost), purged "
            f"{result.purged_messages} messages, {result.purged_rate_limit_keys} rate-limit "
            f"keys, {result.purged_workers} workers in {result.duration_s:.2f}s"
        )

    def purge(n: int) -> str:
        return f"at least {n}" if n >= batch else str(n)

    return (
        f"dry run, nothing changed: would rescue {result.rescued} messages of dead workers, "
        f"time out {result.timed_out} tests, expire {result.expired_runs} runs "
        f"({result.lost} tests lost), purge {purge(result.purged_messages)} messages, "
        f"{purge(result.purged_rate_limit_keys)} rate-limit keys, "
        f"{purge(result.purged_workers)} workers ({result.duration_s:.2f}s)"
    )
