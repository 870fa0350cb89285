"""rhesis-monitor's read commands: ``status``, ``check``, ``inspect``, ``workers``,
``health``. Each reads through :mod:`rhesis_pipeline.monitor` and prints a text view
(:mod:`.text_status`, :mod:`.text_runs`, :mod:`.text_workers`) or, with ``--json``, one
JSON object; none changes anything.
"""

from __future__ import annotations

import sys

import click

from rhesis_pipeline.cli.common import (
    MAX_HOURS_HELP,
    MONITOR_EXIT_CODES,
    emit_json,
    org_option,
    use_database,
)
from rhesis_pipeline.cli.params import HOURS
from rhesis_pipeline.cli.text_runs import check_text, inspect_text
from rhesis_pipeline.cli.text_status import health_text, status_text
from rhesis_pipeline.cli.text_workers import workers_text
from rhesis_pipeline.storage import engine


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json(current.as_dict())
    else:
        click.echo(status_text(current, organization_id))


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json(
            {
                "max_hours": max_hours,
                "stuck": found.matching,
                "runs": [r.as_dict() for r in found.runs],
            }
        )
    else:
        click.echo(check_text(found, max_hours))
    sys.exit(1 if found.matching else 0)


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json(found.as_dict())
    else:
        click.echo(inspect_text(found, verbose))


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json(listing.as_dict())
    else:
        click.echo(workers_text(listing))


@click.command(epilog=MONITOR_EXIT_CODES)
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
        emit_json(report.as_dict())
    else:
        click.echo(health_text(report))
    sys.exit(0 if report.healthy else 1)
