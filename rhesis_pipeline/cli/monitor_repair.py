"""rhesis-monitor's repairs: ``revoke``, ``fix``, ``clean``, ``sweep``.

Each changes nothing without explicit run ids, ``--force`` or ``--yes`` (or the
operator's answer on a terminal), accepts ``--dry-run``, and prints what it did as text
(:mod:`.text_repairs`) or, with ``--json``, one JSON object. Questions are asked on the
terminal only; without one, a command that would ask refuses instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from rhesis_pipeline.cli.common import (
    MONITOR_EXIT_CODES,
    base_queue,
    emit_json,
    org_option,
    use_database,
)
from rhesis_pipeline.cli.params import HOURS, MINUTES, TEXT
from rhesis_pipeline.cli.text_repairs import clean_text, revoke_line, revoke_text, sweep_text
from rhesis_pipeline.cli.text_runs import runs_table
from rhesis_pipeline.cli.text_status import recommendations_text, status_text
from rhesis_pipeline.monitor.diagnosis import plural
from rhesis_pipeline.runs.durations import format_seconds


@click.command(epilog=MONITOR_EXIT_CODES)
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
            click.echo(runs_table(stuck, with_reason=True), err=as_json)
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
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "revoked": sum(o.action == "revoked" for o in outcomes),
                "runs": [o.as_dict() for o in outcomes],
            }
        )
    else:
        click.echo(revoke_text(outcomes, dry_run=dry_run))
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


@click.command(epilog=MONITOR_EXIT_CODES)
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
        click.echo(status_text(plan.before))
        click.echo("")
    say = _sayer(as_json)
    offered, automatic = plan.offered, plan.automatic
    stuck_s, auto_s = plan.stuck_s, plan.auto_revoke_s
    if offered:
        say(f"{plural(len(offered), 'run')} stuck for {format_seconds(stuck_s)} or more:")
        say(runs_table(offered, with_reason=True))
        for run in offered:
            if dry_run:
                plan.revoke(run)
                continue
            question = f"Revoke run {run.id} ({run.name}, {run.reason})?"
            if yes or _ask(question, err=as_json):
                say(revoke_line(plan.revoke(run)))
            else:
                plan.decline(run)
                say(f"left run {run.id} as it is")
    if automatic:
        say(
            f"{plural(len(automatic), 'run')} stuck for {format_seconds(auto_s)} or more: "
            + ("would revoke them (dry run)" if dry_run else "revoking them without asking")
        )
        for run in automatic:
            say(revoke_line(plan.revoke(run)))
    if not plan.stuck:
        say(f"no stuck runs (threshold {format_seconds(stuck_s)})")

    report = plan.report()
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo("")
        click.echo(recommendations_text(report))
    sys.exit(0 if report.healthy else 1)


def _sayer(as_json: bool) -> Callable[[str], None]:
    """Print a line of a repair's progress: on stdout, or on stderr when ``--json``
    owns stdout."""

    def say(text: str) -> None:
        click.echo(text, err=as_json)

    return say


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json({**result.as_dict(), "forced": force})
    else:
        click.echo(clean_text(result, queue))
    if refused:
        click.echo("rhesis-monitor: nothing deleted: pass --force to delete", err=True)
        sys.exit(1)


def _check_queue_exists(queue: str) -> None:
    """A usage error if no message was ever enqueued on *queue* (within the retention),
    no live worker consumes it and it is not one of the pipeline's queues."""
    from rhesis_pipeline.monitor import list_workers, queue_stats
    from rhesis_pipeline.runs import queues

    names = {q.queue for q in queue_stats(list_workers())}
    names |= {queues.TESTS, queues.CALLBACKS, queues.MAINTENANCE}
    known = sorted({base_queue(name) for name in names})
    if base_queue(queue) not in known:
        raise click.BadParameter(
            f"no queue named {queue!r}: nothing is enqueued on it and no worker consumes it; "
            f"the queues are {', '.join(known)}",
            param_hint="'--queue'",
        )


@click.command(epilog=MONITOR_EXIT_CODES)
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
    else:
        click.echo(sweep_text(result, batch=sweeper.retention.batch_size))
