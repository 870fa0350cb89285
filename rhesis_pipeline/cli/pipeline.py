"""``rhesis-pipeline``: migrate the database, check a deployment, run test suites."""

from __future__ import annotations

import click

from .. import __version__, db
from .. import migrate as migrations
from ..logs import configure_logging
from .common import EXIT_CODES_HELP, RhesisGroup, use_database


@click.group(
    cls=RhesisGroup,
    context_settings={"auto_envvar_prefix": "RHESIS", "help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="rhesis-pipeline")
def main() -> None:
    """Run test suites in parallel on Dramatiq workers with a Postgres broker.

    The database is DATABASE_URL, or an embedded Postgres in RHESIS_DATA_DIR when it is
    unset. Every command says on stderr which one it uses.
    """
    configure_logging(db.settings().log_level)


@main.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--sql",
    "sql_only",
    is_flag=True,
    help="Print the SQL instead of running it (does not connect).",
)
def migrate(sql_only: bool) -> None:
    """Create or upgrade the queue schema and the pipeline's tables. Safe to run twice."""
    if sql_only:
        click.echo(migrations.upgrade_sql(), nl=False)
        return
    use_database(migrated=False)
    before, after = migrations.upgrade()
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"migrated database from revision {before or 'none'} to {after}")


@main.command(epilog=EXIT_CODES_HELP)
def check() -> None:
    """Check the settings, the database connection and the schema version.

    bin/worker and bin/scheduler run it before starting, so a deployment with a wrong
    DATABASE_URL or a missing migration fails with one clear line.
    """
    use_database(migrated=True)
    click.echo("ok: settings valid, database reachable and migrated")


def _exec(program: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    import os
    import shutil
    import sys

    # Prefer the program installed next to this Python (the same virtualenv).
    local = os.path.join(os.path.dirname(sys.executable), program)
    path = local if os.path.exists(local) else shutil.which(program)
    if path is None:
        raise click.ClickException(f"{program} is not installed; run pip install rhesis-pipeline")
    click.echo(f"rhesis-pipeline: exec {program} {' '.join(argv)}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, [program, *argv], {**os.environ, **(env or {})})


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog=EXIT_CODES_HELP,
)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Check the deployment, then exec `dramatiq rhesis_pipeline.actors`.

    Processes, threads and queues come from RHESIS_WORKER_PROCESSES (default: CPUs),
    RHESIS_WORKER_THREADS (default 8) and RHESIS_QUEUES (default: all). Extra arguments
    are passed to dramatiq. bin/worker runs this.
    """
    use_database(migrated=True)
    s = db.settings()
    argv = [
        "rhesis_pipeline.actors",
        "--processes",
        str(s.worker_processes),
        "--threads",
        str(s.worker_threads),
    ]
    if s.queues:
        argv += ["--queues", *s.queues]
    _exec("dramatiq", argv + list(ctx.args))


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog=EXIT_CODES_HELP,
)
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Check the deployment, then exec `periodiq rhesis_pipeline.actors` with TZ=UTC.

    periodiq evaluates cron specs in local time; TZ=UTC makes every schedule UTC.
    Run exactly one scheduler: every periodic actor is idempotent and locked, but two
    schedulers enqueue every tick twice. bin/scheduler runs this.
    """
    use_database(migrated=True)
    _exec("periodiq", ["rhesis_pipeline.actors", *ctx.args], env={"TZ": "UTC"})
