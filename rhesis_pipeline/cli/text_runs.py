"""Runs as text: the tables of runs and the page of one run that both CLIs print.

Every function returns the text (no trailing newline) and prints nothing, so that a
command decides where it goes (stdout, or stderr when ``--json`` owns stdout). Ages read
like "3h12m" (:func:`rhesis_pipeline.runs.durations.format_seconds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rhesis_pipeline.cli.text_workers import short_id
from rhesis_pipeline.monitor.diagnosis import plural
from rhesis_pipeline.runs.durations import format_duration, format_seconds
from rhesis_pipeline.runs.report import age, table

if TYPE_CHECKING:
    from rhesis_pipeline.monitor.inspect import RunInspection
    from rhesis_pipeline.monitor.stuck import RunListing
    from rhesis_pipeline.runs.record import Run

#: Characters of a test's error shown in ``inspect --verbose`` (the rest is in --json).
ERROR_WIDTH = 80


def tenant(organization_id: str | None, user_id: str | None) -> str:
    """``org/user`` ("-" for a part not set), or "-" for a run without a tenant."""
    if organization_id or user_id:
        return f"{organization_id or '-'}/{user_id or '-'}"
    return "-"


def progress(done: int, total: int) -> str:
    """``done/total (percent%)``; a run without tests is 100 % done."""
    return f"{done}/{total} ({100.0 * done / total if total else 100.0:.0f}%)"


def runs_table(runs: Sequence[Run], *, with_reason: bool = False) -> str:
    """Unfinished runs, one a row: tenant, status, progress, age, last progress, and (with
    *with_reason*) why each is stuck."""
    headers = ["RUN", "NAME", "TENANT", "STATUS", "PROGRESS", "AGE", "LAST PROGRESS"]
    if with_reason:
        headers.append("WHY STUCK")
    rows = []
    for r in runs:
        status = r.status + (" (cancelling)" if r.cancel_requested else "")
        row = [
            r.id,
            r.name,
            tenant(r.organization_id, r.user_id),
            status,
            progress(r.done, r.total),
            format_seconds(r.age_s),
            format_seconds(r.idle_s) + " ago" if r.last_progress_at else "never",
        ]
        if with_reason:
            row.append(r.reason)
        rows.append(row)
    return table(rows, headers)


def check_text(found: RunListing, max_hours: float) -> str:
    """``rhesis-monitor check``: the stuck runs after *max_hours* hours, or that none is."""
    if not found.runs:
        return f"no stuck runs (threshold {max_hours:g}h)"
    more = "" if found.matching <= len(found.runs) else f" (oldest {len(found.runs)} shown)"
    return f"{plural(found.matching, 'stuck run')} (threshold {max_hours:g}h){more}\n" + runs_table(
        found.runs, with_reason=True
    )


def recent_runs_table(runs: Sequence[Run]) -> str:
    """``rhesis-pipeline runs``: recent runs with their counts, newest first."""
    if not runs:
        return "no runs yet"
    return table(
        [
            [
                r.id,
                r.name,
                r.status,
                f"{r.done}/{r.total}",
                str(r.passed),
                str(r.failed),
                str(r.errored + r.lost),
                age(r.created_at),
            ]
            for r in runs
        ],
        ["RUN", "NAME", "STATUS", "DONE", "PASSED", "FAILED", "ERRORED", "AGE"],
    )


def inspect_text(found: RunInspection, verbose: bool) -> str:
    """``rhesis-monitor inspect``: one run's counts, timing, callback, executor, options,
    its queue messages by state and, if *verbose*, every test."""
    r = found.run
    status = r.status + (" (cancel requested)" if found.cancel_requested else "")
    if r.collected_count:
        callback = f"ran {r.collected_count} time(s)"
    elif found.callback_enqueued_at:
        callback = "enqueued, not run yet"
    else:
        callback = "not enqueued yet (tests unfinished)"
    executor = found.executor.get("target") or found.executor.get("url") or "-"
    options = ", ".join(f"{k}={v}" for k, v in sorted(found.options.items())) or "-"
    pairs = [
        ("tenant", tenant(r.organization_id, r.user_id)),
        (
            "progress",
            f"{progress(r.done, r.total)}: {r.passed} passed, {r.failed} failed, "
            f"{r.errored} errored, {r.lost} lost, {r.cancelled} cancelled",
        ),
        ("created", _when(r.created_at)),
        ("started", _when(r.started_at)),
        ("last progress", _when(found.last_progress_at)),
        ("finished", _when(r.finished_at)),
        ("duration", format_duration(found.duration_s)),
        ("callback", callback),
        ("executor", f"{found.executor.get('type', '-')} {executor}"),
        ("options", options),
    ]
    if r.rerun_of:
        pairs.append(("re-run of", r.rerun_of))
    width = max(len(k) for k, _ in pairs)
    lines = [f"run {r.id} ({r.name}): {status}"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in pairs]
    lines += ["", "QUEUE MESSAGES"]
    if found.messages:
        lines.append(
            table(
                [
                    [m["queue"], m["actor"] or "-", m["state"], str(m["messages"])]
                    for m in found.messages
                ],
                ["QUEUE", "ACTOR", "STATE", "MESSAGES"],
            )
        )
    else:
        lines.append("none (finished messages are purged after RHESIS_QUEUE_RETENTION_HOURS)")
    if verbose and found.tests is not None:
        lines += ["", "TESTS"]
        lines.append(
            table(
                [
                    [
                        t["test_id"],
                        t["status"],
                        str(t["attempts"]),
                        t["worker"]
                        or (f"claimed by {short_id(t['claimed_by'])}" if t["claimed_by"] else "-"),
                        format_duration(_seconds_of_ms(t["duration_ms"])),
                        _clip(t["error"] or "-", ERROR_WIDTH),
                    ]
                    for t in found.tests
                ],
                ["TEST", "STATUS", "ATTEMPTS", "WORKER", "DURATION", "ERROR"],
            )
        )
    return "\n".join(lines)


def _when(value: datetime | None) -> str:
    """A time in UTC and how long ago it was, or "-"."""
    if value is None:
        return "-"
    return f"{value:%Y-%m-%d %H:%M:%S} UTC ({age(value)} ago)"


def _seconds_of_ms(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _clip(text: str, n: int) -> str:
    """*text* on one line, at most *n* characters ("…" ends a cut one)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"
