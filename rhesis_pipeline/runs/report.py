"""What the CLI shows about a run: the JSON shape, the summary, the table, progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

from rhesis_pipeline.runs.durations import format_duration, format_seconds
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.scores import MetricSummary, metric_summary
from rhesis_pipeline.runs.states import TestStatus


def run_json(run_id: str, *, organization_id: str | None = None) -> dict[str, Any]:
    """The documented ``--json`` object of a run (read as *organization_id*'s tenant if
    given: another organization's run is not found)."""
    run = get_run(run_id, organization_id=organization_id)
    results = get_results(run_id, organization_id=organization_id)
    return {
        "run_id": run.id,
        "name": run.name,
        "status": run.status.value,
        "total": run.total,
        "passed": run.passed,
        "failed": run.failed,
        "errored": run.errored + run.lost,
        "cancelled": run.cancelled,
        "duration_s": duration_s(run),
        "trace_id": run.trace_id,
        "results": [
            {
                "test_id": r["test_id"],
                "status": r["status"],
                "error": r["error"],
                "metrics": r["metrics"],
                "attempts": r["attempts"],
            }
            for r in results
        ],
        # Per metric name: judged, passed, scored, mean_score, pass_rate (in SQL).
        "metrics": [m.as_dict() for m in metric_summary(run_id, organization_id=organization_id)],
    }


def recent_run_json(run: Run) -> dict[str, Any]:
    """A run as ``rhesis-pipeline runs --json`` lists it; ``errored`` counts error and lost
    tests (as in :func:`run_json`); the times stay datetimes (printed with ``str``)."""
    return {
        "run_id": run.id,
        "name": run.name,
        "status": run.status.value,
        "organization_id": run.organization_id,
        "user_id": run.user_id,
        "total": run.total,
        "done": run.done,
        "passed": run.passed,
        "failed": run.failed,
        "errored": run.errored + run.lost,
        "cancelled": run.cancelled,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def duration_s(run: Run) -> float:
    end = run.finished_at or datetime.now(timezone.utc)
    return round((end - run.created_at).total_seconds(), 3)


def age(when: datetime | None) -> str:
    """How long ago *when* was, e.g. "3h12m" ("-" for None)."""
    if when is None:
        return "-"
    return format_seconds((datetime.now(timezone.utc) - when).total_seconds())


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def reason(result: dict[str, Any]) -> str:
    """Why a test did not pass, in one line: its error, its failed metrics, or the
    target's own verdict ("-" if it passed)."""
    if result["error"]:
        return str(result["error"])
    failed = [m for m in (result["metrics"] or []) if isinstance(m, dict) and not m.get("passed")]
    if failed:
        return "; ".join(f"{m.get('name')}: {m.get('reason')}" for m in failed)
    if result["status"] == TestStatus.FAILED:  # no error, no failed metric: the target's verdict
        return "the target returned False"
    return "-"


def summary_text(run_id: str, *, organization_id: str | None = None) -> str:
    data = run_json(run_id, organization_id=organization_id)
    lines = [
        f"run {data['run_id']} ({data['name']}): {data['status']}",
        f"  {data['total']} tests: {data['passed']} passed, {data['failed']} failed, "
        f"{data['errored']} errored"
        + (f", {data['cancelled']} cancelled" if data["cancelled"] else "")
        + f" in {format_duration(data['duration_s'])}",
    ]
    if data["trace_id"]:
        lines.append(f"  trace {data['trace_id']}")
    if data["metrics"]:
        lines += ["", metrics_table([MetricSummary(**_fields(m)) for m in data["metrics"]])]
    bad = [r for r in data["results"] if r["status"] != TestStatus.PASSED]
    if bad:
        lines.append("")
        lines.append(
            table(
                [
                    [r["test_id"], r["status"], str(r["attempts"]), _clip(reason(r), 100)]
                    for r in bad
                ],
                ["TEST", "STATUS", "ATTEMPTS", "REASON"],
            )
        )
    return "\n".join(lines)


def _fields(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "pass_rate"}


def metrics_table(summaries: list[MetricSummary]) -> str:
    """The per-metric table of a run: name, type, pass rate (passed/judged) and mean score
    ("-" when the metric gave no score)."""
    return table(
        [
            [
                m.name,
                m.type,
                f"{m.pass_rate:.0%} ({m.passed}/{m.judged})",
                "-" if m.mean_score is None else f"{m.mean_score:.3f}",
            ]
            for m in summaries
        ],
        ["METRIC", "TYPE", "PASS RATE", "MEAN SCORE"],
    )


def _clip(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


class ProgressPrinter:
    """A live progress line on a terminal; lines of their own otherwise (CI, logs).

    Off a terminal a line is printed when tests finished and *interval_s* seconds passed
    since the last one, and at least every *heartbeat_s* seconds even when nothing
    finished, so that a run waiting for workers never looks hung. Such a line says what is
    done, running (``running``: a callable giving a run's running members) and waiting,
    and the rate. *clock*: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        interval_s: float = 2.0,
        *,
        heartbeat_s: float = 30.0,
        running: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.running = running
        self.clock = clock
        self.started = clock()
        self.last_print: float | None = None
        self.last_done = -1
        self.drawn = False  # a terminal's progress line is open (no newline yet)

    def update(self, p: Run, *, final: bool = False) -> None:
        now = self.clock()
        elapsed = max(now - self.started, 1e-6)
        rate = p.done / elapsed
        eta = (p.total - p.done) / rate if rate > 0 else float("inf")
        counts = (
            f"passed {p.passed}  failed {p.failed}  errored {p.errored + p.lost}  {rate:6.1f}/s"
            "  ETA " + ("-" if eta == float("inf") else f"{eta:4.0f}s")
        )
        width = 24
        filled = int(width * p.done / p.total) if p.total else width
        head = f"[{'#' * filled + '-' * (width - filled)}] {p.done}/{p.total} {p.percent:5.1f}%"
        if self.tty:
            line = f"{head}  {counts}"
            self.stream.write("\r" + line)
            if final:
                self.stream.write("\n")
            self.drawn = not final
            self.stream.flush()
            return
        since = None if self.last_print is None else now - self.last_print
        due = (
            final
            or since is None
            or since >= self.heartbeat_s
            or (since >= self.interval_s and p.done != self.last_done)
        )
        if not due:
            return
        line = head
        if not final:
            running = self.running(p.id) if self.running is not None else None
            if running is not None:
                waiting = max(p.total - p.done - running, 0)
                line += f"  running {running}  waiting {waiting}"
        self.stream.write(f"{line}  {counts}\n")
        self.stream.flush()
        self.last_print = now
        self.last_done = p.done

    def note(self, text: str) -> None:
        """Print *text* as a line of its own, ending an open progress line first."""
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()


def wait_for(
    run_id: str,
    *,
    timeout_s: float | None,
    progress: ProgressPrinter | None,
    poll_s: float = 0.2,
    on_idle: Callable[[Run], None] | None = None,
    idle_after_s: float = 5.0,
) -> bool:
    """Poll the run until the callback has finished it; False if *timeout_s* passed first.
    *on_idle* is called with the progress after every *idle_after_s* seconds in which no
    test finished (to say why, once)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_done, since = -1, time.monotonic()
    while True:
        p = get_run(run_id)
        if progress:
            progress.update(p, final=p.finished)
        if p.finished:
            return True
        now = time.monotonic()
        if p.done != last_done:
            last_done, since = p.done, now
        elif on_idle is not None and now - since >= idle_after_s:
            on_idle(p)
            since = now
        if deadline is not None and time.monotonic() >= deadline:
            if progress:
                progress.update(p, final=True)
            return False
        time.sleep(poll_s)
