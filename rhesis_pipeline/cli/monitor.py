"""``rhesis-monitor``: the operator's view of runs, queues and workers.

Its commands (status, check, revoke, inspect, clean, fix, workers, health, sweep) are
added by later releases; the entry point and its error handling exist from the start.
"""

from __future__ import annotations

import click

from .. import __version__, db
from ..logs import configure_logging
from .common import EXIT_CODES_HELP, RhesisGroup


@click.group(
    cls=RhesisGroup,
    context_settings={"auto_envvar_prefix": "RHESIS", "help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="rhesis-monitor")
def main() -> None:
    """Inspect and repair test runs, queues and workers."""
    configure_logging(db.settings().log_level)


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep(dry_run: bool, as_json: bool) -> None:
    """Run the sweeper once: rescue dead workers' messages, expire overdue runs, purge.

    Only one sweep runs at a time: if another is running this one does nothing and says
    so (exit 0). Running it twice in a row changes nothing the second time.
    """
    import json

    from ..maintenance.sweeper import Sweeper
    from .common import use_database

    use_database(migrated=True)
    result = Sweeper.from_settings().run_once(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    if not result.ran:
        click.echo("another sweep is running; this one did nothing")
        return
    would = "would be " if dry_run else ""
    click.echo(
        f"rescued {result.rescued} {would}messages of dead workers, timed out {result.timed_out}"
        f" tests, expired {result.expired_runs} runs ({result.lost} tests lost), purged "
        f"{result.purged_messages} messages, {result.purged_rate_limit_keys} rate-limit keys, "
        f"{result.purged_workers} workers in {result.duration_s:.2f}s"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
