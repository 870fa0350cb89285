"""``rhesis-monitor``: the operator's view of runs, queues and workers, and its repairs.

Every command is a thin layer over :mod:`rhesis_pipeline.monitor` (the same functions a
Python caller uses): it parses options, calls one function, and prints either aligned
tables (ages like "3h12m") or, with ``--json``, one JSON object whose fields the README
lists. Destructive commands (revoke, clean, fix) change nothing without explicit run
ids, ``--force`` or ``--yes``, and accept ``--dry-run``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rhesis_pipeline import __version__
from rhesis_pipeline.cli.common import RhesisGroup, org_option, use_database
from rhesis_pipeline.cli.params import HOURS, MINUTES, PORT, TEXT
from rhesis_pipeline.errors import RhesisError
from rhesis_pipeline.logs import configure_logging
from rhesis_pipeline.monitor.diagnosis import PROBLEM, plural
from rhesis_pipeline.runs.report import format_duration, format_seconds, table
from rhesis_pipeline.storage import engine

EXIT_CODES_HELP = """\b
Exit codes:
  0   success, nothing wrong found
  1   problems found (check, health, fix, clean without --force), or an
      operation failed (database unreachable or not migrated, unknown run)
  2   usage error or invalid setting
  130 interrupted (Ctrl-C); a revocation under way is rolled back whole
"""

MAX_HOURS_HELP = (
    "Stuck threshold in hours: a run QUEUED or IN_PROGRESS this long, or without "
    "progress this long, is stuck."
)


class MonitorGroup(RhesisGroup):
    """rhesis-monitor's exit codes: 2 for usage and settings, 1 for every other failure."""

    def exit_code_for(self, exc: RhesisError) -> int:
        return 2 if exc.exit_code == 2 else 1


@click.group(
    cls=MonitorGroup,
    context_settings={"auto_envvar_prefix": "RHESIS", "help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="rhesis-monitor")
def main() -> None:
    """Inspect and repair test runs, queues and workers.

    Reads DATABASE_URL (default: the embedded database) and RHESIS_* settings.
    """
    configure_logging(engine.settings().log_level, engine.settings().log_format)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _short(worker_id: str | None) -> str:
    return worker_id[:8] if worker_id else "-"


def _tenant(org: str | None, user: str | None) -> str:
    return f"{org or '-'}/{user or '-'}" if org or user else "-"


def _progress(done: int, total: int) -> str:
    return f"{done}/{total} ({100.0 * done / total if total else 100.0:.0f}%)"


def _findings_text(findings, heading: str) -> list[str]:
    if not findings:
        return []
    lines = ["", heading]
    for f in findings:
        mark = "!" if f.severity == PROBLEM else "-"
        lines.append(f"{mark} {f.message}")
        lines.append(f"    -> {f.recommendation}")
    return lines


def _runs_table(runs, *, with_reason: bool = False) -> str:
    headers = ["RUN", "NAME", "TENANT", "STATUS", "PROGRESS", "AGE", "LAST PROGRESS"]
    if with_reason:
        headers.append("WHY STUCK")
    rows = []
    for r in runs:
        status = r.status + (" (cancelling)" if r.cancel_requested else "")
        row = [
            r.id,
            r.name,
            _tenant(r.organization_id, r.user_id),
            status,
            _progress(r.done, r.total),
            format_seconds(r.age_s),
            format_seconds(r.idle_s) + " ago" if r.last_progress_at else "never",
        ]
        if with_reason:
            row.append(r.reason)
        rows.append(row)
    return table(rows, headers)


# -- status ---------------------------------------------------------------------------


def _status_text(current, organization_id: str | None = None) -> str:
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
    lines.append(_runs_table(s.runs.runs) if s.runs.runs else "none")
    lines.append("")
    lines.append("QUEUES")
    if s.queues:
        lines.append(
            table(
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
                    for q in s.queues
                ],
                ["QUEUE", "QUEUED", "CONSUMED", "REJECTED", "DONE", "OLDEST QUEUED", "CONSUMERS"],
            )
        )
    else:
        lines.append("none")
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
        lines.append(
            table(
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
                    for e in s.endpoints
                ],
                ["KEY", "IN FLIGHT", "LIMIT/MAX", "RPM", "WAITING", "PAUSED", "429s/MIN"],
            )
        )
    lines.append("")
    lines.append(f"WORKERS ({_worker_counts(s.workers)})")
    if s.workers.live:
        lines.append(_workers_table(s.workers.live))
    lines.append("")
    lines.append(
        f"STUCK RUNS: {s.runs.stuck} (queued or in progress for {s.max_hours:g}h or more, "
        "or without progress for that long)"
    )
    lines += _findings_text(current.findings, "WARNINGS")
    if not current.findings:
        lines += ["", "WARNINGS: none"]
    return "\n".join(lines)


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--max-hours", type=HOURS, default=2.0, show_default=True, help=MAX_HOURS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@org_option("Show runs and queue messages")
def status(max_hours: float, as_json: bool, organization_id: str | None) -> None:
    """Runs by status, active runs, queues, live workers, stuck runs and warnings.

    Exits 0 whenever it could read the state, whatever it shows (use `health` or
    `check` for an exit code that reflects problems). With --org, runs and queue
    messages are that organization's only; workers are shown whole.
    """
    from rhesis_pipeline.monitor import status as read_status

    use_database(migrated=True)
    current = read_status(max_hours=max_hours, organization_id=organization_id)
    if as_json:
        _emit_json(current.as_dict())
    else:
        click.echo(_status_text(current, organization_id))


# -- check ----------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--max-hours", type=HOURS, required=True, help=MAX_HOURS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@org_option("Check")
def check(max_hours: float, as_json: bool, organization_id: str | None) -> None:
    """List stuck runs; exit 1 if there is any, 0 if none.

    A run is stuck when it has been QUEUED or IN_PROGRESS for --max-hours or longer, or
    has made no progress for that long (0 finds every unfinished run).
    """
    from rhesis_pipeline.monitor import unfinished_runs

    use_database(migrated=True)
    found = unfinished_runs(max_hours=max_hours, only_stuck=True, organization_id=organization_id)
    if as_json:
        _emit_json(
            {
                "max_hours": max_hours,
                "stuck": found.matching,
                "runs": [r.as_dict() for r in found.runs],
            }
        )
    elif not found.runs:
        click.echo(f"no stuck runs (threshold {max_hours:g}h)")
    else:
        more = "" if found.matching <= len(found.runs) else f" (oldest {len(found.runs)} shown)"
        click.echo(f"{plural(found.matching, 'stuck run')} (threshold {max_hours:g}h){more}")
        click.echo(_runs_table(found.runs, with_reason=True))
    sys.exit(1 if found.matching else 0)


# -- revoke ---------------------------------------------------------------------------


def _revoke_line(o) -> str:
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


def _revoke_report(outcomes, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "dry_run": dry_run,
                "revoked": sum(o.action == "revoked" for o in outcomes),
                "runs": [o.as_dict() for o in outcomes],
            }
        )
        return
    if not outcomes:
        click.echo("nothing to revoke")
    for o in outcomes:
        click.echo(_revoke_line(o))
    if dry_run and outcomes:
        click.echo("dry run: nothing changed")


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "--max-hours",
    type=HOURS,
    help="Revoke every run stuck for this many hours (see `check`).",
)
@click.option("--yes", "-y", is_flag=True, help="With --max-hours: revoke without asking.")
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@org_option("Revoke")
def revoke(
    run_ids: tuple[str, ...],
    max_hours: float | None,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    organization_id: str | None,
) -> None:
    """Cancel runs: the given RUN_IDs, or every run stuck for --max-hours.

    Waiting member messages are removed, members executing are interrupted at their
    worker's next revocation check (their outcome is refused), unfinished tests become
    `cancelled`, and the run's callback is enqueued once: the run becomes CANCELLED when a
    worker runs it, and hooks run as for any run. Each run is revoked in one transaction.
    A run whose every test has an outcome but whose callback failed for good gets that
    callback enqueued again. With --max-hours it asks before revoking
    (unless --yes); it does not revoke without --yes when it cannot ask.
    A RUN_ID is a UUID or a unique prefix of at least 8 hex digits; every one is resolved
    before the first is revoked. Exits 1 if a given run does not exist.
    """
    from rhesis_pipeline.monitor import find_stuck_runs, revoke_runs
    from rhesis_pipeline.runs.ids import parse_all, resolve

    if bool(run_ids) == (max_hours is not None):
        raise click.UsageError("give RUN_IDs or --max-hours H (one of the two)")
    parsed = parse_all(run_ids)  # malformed ids: usage error before touching anything
    use_database(migrated=True)
    # Prefixes are resolved, all of them before the first revocation.
    ids = [resolve(p, organization_id=organization_id) for p in parsed]
    if max_hours is not None:
        stuck = find_stuck_runs(max_hours, organization_id=organization_id)
        ids = [r.id for r in stuck]
        if stuck and not dry_run and not yes:
            click.echo(
                f"{plural(len(stuck), 'run')} stuck for {max_hours:g}h or more:", err=as_json
            )
            click.echo(_runs_table(stuck, with_reason=True), err=as_json)
            if not _can_ask():
                click.echo(
                    "rhesis-monitor: nothing revoked: pass --yes to revoke them without asking",
                    err=True,
                )
                sys.exit(1)
            if not _ask(
                f"Revoke {'it' if len(stuck) == 1 else f'these {len(stuck)}'}?", err=as_json
            ):
                click.echo("nothing revoked", err=True)
                sys.exit(1)
    outcomes = revoke_runs(ids, dry_run=dry_run, organization_id=organization_id)
    _revoke_report(outcomes, dry_run=dry_run, as_json=as_json)
    sys.exit(1 if any(o.action == "not_found" for o in outcomes) else 0)


def _can_ask() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stdin
        return False


def _ask(question: str, *, err: bool = False) -> bool:
    """Ask a yes/no question on the terminal; default no. End of input answers no.
    Ctrl-C raises KeyboardInterrupt (exit 130), unlike click.confirm, which would turn
    it into an "Aborted!" with exit code 1."""
    click.echo(f"{question} [y/N] ", nl=False, err=err)
    line = sys.stdin.readline()
    if not line:
        click.echo("(no answer: no)", err=err)
        return False
    return line.strip().lower() in ("y", "yes")


# -- inspect --------------------------------------------------------------------------


def _inspect_text(found, verbose: bool) -> str:
    r = found.run
    status = r.status + (" (cancel requested)" if found.cancel_requested else "")
    if found.run.collected_count:
        callback = f"ran {found.run.collected_count} time(s)"
    elif found.callback_enqueued_at:
        callback = "enqueued, not run yet"
    else:
        callback = "not enqueued yet (tests unfinished)"
    executor = found.executor.get("target") or found.executor.get("url") or "-"
    options = ", ".join(f"{k}={v}" for k, v in sorted(found.options.items())) or "-"

    def when(value) -> str:
        if value is None:
            return "-"
        from rhesis_pipeline.runs.report import age

        return f"{value:%Y-%m-%d %H:%M:%S} UTC ({age(value)} ago)"

    pairs = [
        ("tenant", _tenant(r.organization_id, r.user_id)),
        (
            "progress",
            f"{_progress(r.done, r.total)}: {r.passed} passed, {r.failed} failed, "
            f"{r.errored} errored, {r.lost} lost, {r.cancelled} cancelled",
        ),
        ("created", when(r.created_at)),
        ("started", when(r.started_at)),
        ("last progress", when(found.last_progress_at)),
        ("finished", when(r.finished_at)),
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
                        or (f"claimed by {_short(t['claimed_by'])}" if t["claimed_by"] else "-"),
                        format_duration(_seconds_of_ms(t["duration_ms"])),
                        _clip(t["error"] or "-", 80),
                    ]
                    for t in found.tests
                ],
                ["TEST", "STATUS", "ATTEMPTS", "WORKER", "DURATION", "ERROR"],
            )
        )
    return "\n".join(lines)


def _seconds_of_ms(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _clip(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("run_id")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also list every test: status, attempts, error, worker, duration.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@org_option()
def inspect(run_id: str, verbose: bool, as_json: bool, organization_id: str | None) -> None:
    """Show one run: counts, timing, callback, and its queue messages by state.

    RUN_ID: the run's UUID or a unique prefix of at least 8 hex digits.
    """
    from rhesis_pipeline.monitor import inspect_run
    from rhesis_pipeline.runs.ids import parse, resolve

    parsed = parse(run_id)
    use_database(migrated=True)
    run_id = resolve(parsed, organization_id=organization_id)
    found = inspect_run(run_id, verbose=verbose, organization_id=organization_id)
    if as_json:
        _emit_json(found.as_dict())
    else:
        click.echo(_inspect_text(found, verbose))


# -- clean ----------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--force", is_flag=True, help="Really delete (without it nothing is deleted).")
@click.option(
    "--queue",
    "queue",
    type=TEXT,
    metavar="Q",
    help="Only this queue (and its delay queue Q.DQ); default: every queue.",
)
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def clean(force: bool, queue: str | None, dry_run: bool, as_json: bool) -> None:
    """Purge waiting messages from the queues.

    Runs that lose members are revoked in the same transaction, so they end CANCELLED
    (never left IN_PROGRESS). Completion callbacks are kept (deleting one would leave
    its run unfinished), and messages being processed are not touched. Without --force
    it deletes nothing, says what would be deleted and exits 1.
    """
    from rhesis_pipeline.monitor import clean_queues

    if queue is not None and not queue.strip():
        raise click.BadParameter("must not be empty", param_hint="--queue")
    use_database(migrated=True)
    if queue is not None:
        _check_queue_exists(queue)
    result = clean_queues(queue, dry_run=dry_run or not force)
    refused = not force and not dry_run
    if as_json:
        _emit_json({**result.as_dict(), "forced": force})
    else:
        scope = f"queue {queue} (and {queue}.DQ)" if queue else "every queue"
        verb = "would delete" if result.dry_run else "deleted"
        click.echo(f"{verb} {result.deleted} waiting messages from {scope}")
        if result.messages:
            click.echo(
                table(
                    [[m["queue"], m["actor"] or "-", str(m["messages"])] for m in result.messages],
                    ["QUEUE", "ACTOR", "MESSAGES"],
                )
            )
        if result.cancelled_runs:
            verb_runs = "would cancel" if result.dry_run else "cancelled"
            click.echo(f"{verb_runs} {len(result.cancelled_runs)} runs whose members are removed:")
            for run_id in result.cancelled_runs:
                click.echo(f"  {run_id}")
        if result.kept_callbacks:
            click.echo(
                f"kept {result.kept_callbacks} completion callbacks (their runs must finish)"
            )
    if refused:
        click.echo("rhesis-monitor: nothing deleted: pass --force to delete", err=True)
        sys.exit(1)


def _check_queue_exists(queue: str) -> None:
    """A usage error if no message was ever enqueued on *queue* (within the retention),
    no live worker consumes it and it is not one of the pipeline's queues."""
    from dramatiq.common import q_name

    from rhesis_pipeline.monitor import list_workers, queue_stats
    from rhesis_pipeline.runs import queues

    names = {q.queue for q in queue_stats(list_workers())}
    names |= {queues.TESTS, queues.CALLBACKS, queues.MAINTENANCE}
    known = sorted({q_name(name) for name in names})
    if q_name(queue) not in known:
        raise click.BadParameter(
            f"no queue named {queue!r}: nothing is enqueued on it and no worker consumes it; "
            f"the queues are {', '.join(known)}",
            param_hint="'--queue'",
        )


# -- fix ------------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--yes", "-y", is_flag=True, help="Do not ask: revoke every stuck run (for cron).")
@click.option(
    "--stuck-minutes",
    type=MINUTES,
    default=30.0,
    show_default=True,
    help="Runs stuck this long are offered for revocation.",
)
@click.option(
    "--auto-revoke-hours",
    type=HOURS,
    default=2.0,
    show_default=True,
    help="Runs stuck this long are revoked without asking.",
)
@click.option("--dry-run", is_flag=True, help="Report what would be done; ask and change nothing.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (questions, if any, go to stderr).",
)
def fix(
    yes: bool, stuck_minutes: float, auto_revoke_hours: float, dry_run: bool, as_json: bool
) -> None:
    """Show the status, revoke stuck runs, recommend what to do next.

    Runs stuck for --stuck-minutes are offered for revocation one by one (--yes:
    revoked without asking); runs stuck for --auto-revoke-hours are revoked without
    asking. Each revocation is one transaction: Ctrl-C at any point leaves every run
    either revoked or untouched. Exits 0 if no problem remains, 1 otherwise.
    """
    from rhesis_pipeline.monitor import plan_fix

    use_database(migrated=True)
    plan = plan_fix(stuck_minutes, auto_revoke_hours, dry_run=dry_run)
    if not as_json:
        click.echo(_status_text(plan.before))
        click.echo("")
    say = _sayer(as_json)
    offered, automatic = plan.offered, plan.automatic
    stuck_s, auto_s = plan.stuck_s, plan.auto_revoke_s
    if offered:
        say(f"{plural(len(offered), 'run')} stuck for {format_seconds(stuck_s)} or more:")
        say(_runs_table(offered, with_reason=True))
        for run in offered:
            if dry_run:
                plan.revoke(run)
                continue
            question = f"Revoke run {run.id} ({run.name}, {run.reason})?"
            if yes or _ask(question, err=as_json):
                say(_revoke_line(plan.revoke(run)))
            else:
                plan.decline(run)
                say(f"left run {run.id} as it is")
    if automatic:
        say(
            f"{plural(len(automatic), 'run')} stuck for {format_seconds(auto_s)} or more: "
            + ("would revoke them (dry run)" if dry_run else "revoking them without asking")
        )
        for run in automatic:
            say(_revoke_line(plan.revoke(run)))
    if not plan.stuck:
        say(f"no stuck runs (threshold {format_seconds(stuck_s)})")

    report = plan.report()
    if as_json:
        _emit_json(report.as_dict())
    else:
        click.echo("")
        if report.recommendations:
            for line in _findings_text(report.recommendations, "RECOMMENDATIONS")[1:]:
                click.echo(line)
        else:
            click.echo("RECOMMENDATIONS: none; everything looks fine")
    sys.exit(0 if report.healthy else 1)


def _sayer(as_json: bool):
    def say(text: str) -> None:
        click.echo(text, err=as_json)

    return say


# -- workers --------------------------------------------------------------------------


def _worker_counts(listing) -> str:
    return f"{len(listing.live)} live, {len(listing.stopped)} stopped, {len(listing.dead)} dead"


def _workers_table(workers) -> str:
    return table(
        [
            [
                w.name,
                _short(w.worker_id),
                w.state,
                ",".join(w.queues),
                format_seconds(w.heartbeat_age_s),
                str(len(w.claims)),
            ]
            for w in workers
        ],
        ["WORKER", "ID", "STATE", "QUEUES", "HEARTBEAT", "RUNNING"],
    )


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def workers(as_json: bool) -> None:
    """Workers, live, stopped or dead: queues, heartbeat age, and what each is running.

    States: live, reconnecting (live, its connection lost), stopped (cleanly), dead (died
    without stopping). "Running" is the messages a worker has claimed: the members
    executing now and any it has prefetched. Stopped and dead workers are listed for
    RHESIS_WORKER_RETENTION_HOURS.
    """
    from rhesis_pipeline.monitor import list_workers

    use_database(migrated=True)
    listing = list_workers()
    if as_json:
        _emit_json(listing.as_dict())
        return
    click.echo(f"WORKERS ({_worker_counts(listing)})")
    if not listing.workers:
        click.echo("none registered")
        return
    click.echo(_workers_table(listing.workers))
    running: list[tuple[Any, Any]] = [(w, c) for w in listing.workers for c in w.claims]
    running += [(None, c) for c in listing.unowned]
    if running:
        click.echo("")
        click.echo("RUNNING")
        click.echo(
            table(
                [
                    [
                        w.name if w else "(no registered worker)",
                        c.actor or "-",
                        c.run_id or "-",
                        c.test_id or "-",
                        c.queue,
                        format_seconds(c.age_s),
                    ]
                    for w, c in running
                ],
                ["WORKER", "ACTOR", "RUN", "TEST", "QUEUE", "FOR"],
            )
        )


# -- health ---------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--max-hours", type=HOURS, default=2.0, show_default=True, help=MAX_HOURS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def health(max_hours: float, as_json: bool) -> None:
    """Healthy or unhealthy, with the reasons; exit 0 or 1.

    Unhealthy: database unreachable, no live worker, stuck runs, a queue with waiting
    messages and no consumer, an orphan backlog (dead workers' messages not rescued).
    The same check as rhesis_pipeline.monitor.check_health().
    """
    from rhesis_pipeline.monitor import check_health

    engine.settings()
    report = check_health(max_hours=max_hours)
    if as_json:
        _emit_json(report.as_dict())
    else:
        if report.healthy:
            click.echo(
                f"healthy: {report.live_workers} live workers, no stuck runs "
                f"(threshold {max_hours:g}h)"
            )
        else:
            click.echo(f"unhealthy: {len(report.problems)} problems")
        for line in _findings_text(report.problems, "PROBLEMS")[1:]:
            click.echo(line)
        for line in _findings_text(report.warnings, "WARNINGS"):
            click.echo(line)
    sys.exit(0 if report.healthy else 1)


@main.command("serve-health", epilog=EXIT_CODES_HELP)
@click.option(
    "--port",
    type=PORT,
    required=True,
    help="Port to listen on (0: any free port, printed on start).",
)
@click.option(
    "--host", type=TEXT, default="0.0.0.0", show_default=True, help="Address to listen on."
)
@click.option("--max-hours", type=HOURS, default=2.0, show_default=True, help=MAX_HOURS_HELP)
def serve_health(port: int, host: str, max_hours: float) -> None:
    """Serve the health check over HTTP: GET /healthz answers 200 (healthy) or 503.

    The body is the `health --json` object. Stops cleanly on SIGTERM or Ctrl-C.
    """
    import signal
    import threading

    from rhesis_pipeline.monitor.http import HealthServer

    engine.settings()
    try:
        server = HealthServer(host, port, max_hours=max_hours)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def stop(_signum, _frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"serving health on {server.url}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# -- dashboard ------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--host", type=TEXT, default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    type=PORT,
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port, printed on start).",
)
@org_option("Show and act")
@click.option(
    "--org-header",
    metavar="HEADER",
    help="Take the organization of each request from this header (e.g. X-Rhesis-Org), "
    "set by a trusted proxy that also strips it from clients' requests; a request "
    "without it is refused.",
)
@click.option("--read-only", is_flag=True, help="Refuse every action (revoke, re-run).")
@click.option(
    "--forwarded-allow-ips",
    type=TEXT,
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Proxies (comma-separated addresses or networks, * for any) whose "
    "X-Forwarded-Proto and X-Forwarded-For are believed: behind one that terminates TLS, "
    "the dashboard's cookies are Secure.",
)
def dashboard(
    host: str,
    port: int,
    organization_id: str | None,
    org_header: str | None,
    read_only: bool,
    forwarded_allow_ips: str,
) -> None:
    """Serve the web dashboard: runs, tests, workers, queues, actions, /metrics.

    With RHESIS_DASHBOARD_TOKEN set, every page needs that token (a bearer token, or the
    login form). Every response carries a strict Content-Security-Policy and refuses
    framing; cookies are Secure over HTTPS (or behind a proxy of --forwarded-allow-ips
    that says so with X-Forwarded-Proto). Stops cleanly on SIGTERM or Ctrl-C. Needs the
    `dashboard` extra (pip install 'rhesis-pipeline[dashboard]').
    """
    import os
    import socket

    try:
        import uvicorn

        from rhesis_pipeline.dashboard.app import create_app
        from rhesis_pipeline.dashboard.state import DashboardConfig
    except ImportError as exc:
        raise click.UsageError(
            f"the dashboard needs the `dashboard` extra ({exc.name} is missing): "
            "pip install 'rhesis-pipeline[dashboard]'"
        ) from None
    use_database(migrated=True)
    config = DashboardConfig(
        organization=organization_id,
        organization_header=org_header,
        read_only=read_only,
        token=os.environ.get("RHESIS_DASHBOARD_TOKEN") or None,
    )
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"serving dashboard on http://{bound_host}:{bound_port}/", err=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    )
    server.run(sockets=[sock])


# -- sweep ----------------------------------------------------------------------------


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep(dry_run: bool, as_json: bool) -> None:
    """Run the sweeper once: rescue dead workers' messages, expire overdue runs, purge.

    Only one sweep runs at a time: if another is running this one does nothing and says
    so (exit 0). Running it twice in a row changes nothing the second time.
    """
    from rhesis_pipeline.maintenance.sweeper import Sweeper

    use_database(migrated=True)
    sweeper = Sweeper.from_settings()
    result = sweeper.run_once(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    if not result.ran:
        click.echo("another sweep is running; this one did nothing")
        return
    click.echo(_sweep_text(result, batch=sweeper.retention.batch_size))


def _sweep_text(result, *, batch: int) -> str:
    """One line: what the sweep did or, in a dry run, would do. A dry run counts one
    batch of each purge only, so a full batch reads "at least N"."""
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
