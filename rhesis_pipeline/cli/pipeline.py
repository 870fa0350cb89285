"""``rhesis-pipeline``: migrate the database, check a deployment, run test suites."""

from __future__ import annotations

import click

from rhesis_pipeline import __version__
from rhesis_pipeline.cli import exports
from rhesis_pipeline.cli.common import (
    PIPELINE_EXIT_CODES,
    RhesisGroup,
    org_option,
    use_database,
)
from rhesis_pipeline.cli.diff_command import diff
from rhesis_pipeline.cli.idle_notice import IdleNotice
from rhesis_pipeline.cli.params import TEXT, TIMEOUT_SECONDS, count
from rhesis_pipeline.cli.probe import probe
from rhesis_pipeline.cli.text_runs import recent_runs_table
from rhesis_pipeline.logs import configure_logging
from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage import migrate as migrations


@click.group(
    cls=RhesisGroup,
    context_settings={"auto_envvar_prefix": "RHESIS", "help_option_names": ["-h", "--help"]},
    epilog=PIPELINE_EXIT_CODES,
)
@click.version_option(__version__, prog_name="rhesis-pipeline")
def main() -> None:
    """Run test suites in parallel on Dramatiq workers with a Postgres broker.

    The database is DATABASE_URL, or an embedded Postgres in RHESIS_DATA_DIR when it is
    unset. Every command says on stderr which one it uses.
    """
    configure_logging(engine.settings().log_level, engine.settings().log_format)


main.add_command(diff)
main.add_command(probe)


@main.command(epilog=PIPELINE_EXIT_CODES)
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


@main.command(epilog=PIPELINE_EXIT_CODES)
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
    epilog=PIPELINE_EXIT_CODES,
)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Check the deployment, then exec `dramatiq rhesis_pipeline.actors`.

    Processes, threads and queues come from RHESIS_WORKER_PROCESSES (default: CPUs),
    RHESIS_WORKER_THREADS (default 8) and RHESIS_QUEUES (default: all). Extra arguments
    are passed to dramatiq. bin/worker runs this.
    """
    use_database(migrated=True)
    s = engine.settings()
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
    epilog=PIPELINE_EXIT_CODES,
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


def _exit_code(run_id: str) -> int:
    from rhesis_pipeline.runs.read import get_run

    run = get_run(run_id)
    return 0 if run.status == "COMPLETED" and run.passed == run.total else 1


def _finish(
    run_id: str,
    *,
    finished: bool,
    as_json: bool,
    timeout: float | None,
    outputs: list[tuple[str, str]],
) -> None:
    import json as json_
    import sys

    from rhesis_pipeline.runs.report import run_json, summary_text

    exports.write_run_outputs(run_id, outputs)
    if as_json:
        data = run_json(run_id)
        if not finished:
            data["timed_out"] = True
        click.echo(json_.dumps(data, indent=2, default=str))
    else:
        click.echo(summary_text(run_id))
    if not finished:
        click.echo(
            f"rhesis-pipeline: --timeout of {timeout:g}s expired; run {run_id} goes on "
            f"(rhesis-pipeline show {run_id})",
            err=True,
        )
        sys.exit(1)
    sys.exit(_exit_code(run_id))


def _import_from_cwd() -> None:
    """Let a suite's python target be imported from the current directory, as dramatiq
    (started from there) imports it in the workers."""
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@main.command(
    epilog="""\b
Exit codes:
  0   the run is COMPLETED and every test passed (or, without --wait, it was submitted)
  1   a test failed or errored, the run is PARTIAL/FAILED/CANCELLED, or --timeout expired
  2   bad input (the suite file, an option)
  3   database unreachable
  4   database not migrated
  130 interrupted (Ctrl-C) while waiting; the run goes on
"""
)
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--wait", is_flag=True, help="Show progress until the run is finished.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--org", type=TEXT, help="Organization id (tenant) of the run.")
@click.option("--user", type=TEXT, help="User id of the run.")
@click.option(
    "--timeout",
    type=TIMEOUT_SECONDS,
    help="With --wait: give up waiting after SECONDS (exit 1).",
)
@click.option("--junit", metavar="FILE", type=click.Path(dir_okay=False), help=exports.JUNIT_HELP)
@click.option(
    "--output", metavar="FILE", type=click.Path(dir_okay=False), help=exports.RUN_OUTPUT_HELP
)
def run(
    suite: str,
    wait: bool,
    as_json: bool,
    org: str | None,
    user: str | None,
    timeout: float | None,
    junit: str | None,
    output: str | None,
) -> None:
    """Submit the tests of a suite file (JSON or YAML) as one run.

    The suite is validated before anything is enqueued. Prints the run id; with --wait,
    shows live progress until the completion callback has finished the run, then a
    summary and a table of the tests that did not pass. --wait needs a running worker
    (`rhesis-pipeline worker`); without one it says so after a few seconds. A python
    target is imported from the current directory too (as dramatiq does), and must be
    importable by the workers. --junit and --output write the results to files when the
    run has finished (or --timeout expired: unfinished tests are then skipped).
    """
    import json as json_
    import sys

    _import_from_cwd()

    from rhesis_pipeline.runs.read import running_members
    from rhesis_pipeline.runs.report import ProgressPrinter, run_json, wait_for
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.suites.load import load_suite

    parsed = load_suite(suite)
    outputs = exports.run_outputs(junit, output, wait=wait)
    use_database(migrated=True)
    run_id = launch_test_run(
        parsed.tests,
        executor=parsed.endpoint,
        name=parsed.name,
        organization_id=org,
        user_id=user,
        options=parsed.options,
    )
    if not wait:
        if as_json:
            click.echo(
                json_.dumps({"run_id": run_id, "status": "QUEUED", "total": len(parsed.tests)})
            )
        else:
            click.echo(run_id)
        return
    progress = ProgressPrinter(running=running_members)
    try:
        click.echo(f"run {run_id}: {len(parsed.tests)} tests of {parsed.name!r}", err=True)
        finished = wait_for(
            run_id, timeout_s=timeout, progress=progress, on_idle=IdleNotice(run_id, progress)
        )
    except KeyboardInterrupt:
        progress.note(
            f"rhesis-pipeline: interrupted: stopped waiting; run {run_id} goes on "
            f"(rhesis-pipeline show {run_id})"
        )
        if as_json:
            click.echo(json_.dumps({**run_json(run_id), "interrupted": True}, indent=2))
        sys.exit(130)
    _finish(run_id, finished=finished, as_json=as_json, timeout=timeout, outputs=outputs)


@main.command(epilog=PIPELINE_EXIT_CODES)
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--format", "fmt", type=click.Choice(exports.FORMAT_NAMES), help=exports.FORMAT_HELP)
@click.option(
    "--output", metavar="FILE", type=click.Path(dir_okay=False), help=exports.SHOW_OUTPUT_HELP
)
@org_option()
def show(
    run_id: str, as_json: bool, fmt: str | None, output: str | None, organization_id: str | None
) -> None:
    """Show a run: status, counts, and the tests that did not pass (all with --json).

    RUN_ID: the run's UUID or a unique prefix of at least 8 hex digits. With --format or
    --output, the results as a file instead (an unknown run is then exit 2).
    """
    import json as json_

    from rhesis_pipeline.runs.ids import parse, resolve
    from rhesis_pipeline.runs.report import run_json, summary_text

    parsed = parse(run_id)
    if as_json and (fmt or output):
        raise click.UsageError("--json and --format/--output exclude each other: give one")
    use_database(migrated=True)
    if fmt or output:
        exports.show_export(parsed, fmt, output, organization_id)
        return
    run_id = resolve(parsed, organization_id=organization_id)
    if as_json:
        data = run_json(run_id, organization_id=organization_id)
        click.echo(json_.dumps(data, indent=2, default=str))
    else:
        click.echo(summary_text(run_id, organization_id=organization_id))


@main.command(epilog=PIPELINE_EXIT_CODES)
@click.argument("run_id")
@click.option(
    "--all",
    "all_tests",
    is_flag=True,
    help="Run every test again, not only those that failed or errored.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@org_option()
def rerun(run_id: str, all_tests: bool, as_json: bool, organization_id: str | None) -> None:
    """Re-run a run's failed and errored tests as a new run (prints its id).

    The new run has the same executor, options and tenant, and records which run it
    came from. Follow it with `rhesis-pipeline show NEW_ID`. RUN_ID: the run's UUID or a
    unique prefix of at least 8 hex digits.
    """
    import json as json_

    from rhesis_pipeline.runs.ids import parse, resolve
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.rerun import rerun as rerun_run

    parsed = parse(run_id)
    use_database(migrated=True)
    run_id = resolve(parsed, organization_id=organization_id)
    new_id = rerun_run(run_id, all_tests=all_tests, organization_id=organization_id)
    if as_json:
        new = get_run(new_id, organization_id=organization_id)
        click.echo(json_.dumps({"run_id": new_id, "rerun_of": run_id, "total": new.total}))
    else:
        click.echo(new_id)


@main.command("runs", epilog=PIPELINE_EXIT_CODES)
@click.option("--limit", default=20, show_default=True, type=count(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@org_option()
def list_runs(limit: int, as_json: bool, organization_id: str | None) -> None:
    """List recent runs, newest first."""
    import json as json_

    from rhesis_pipeline.runs.read import recent_runs
    from rhesis_pipeline.runs.report import recent_run_json

    use_database(migrated=True)
    rows = recent_runs(limit, organization_id=organization_id)
    if as_json:
        click.echo(json_.dumps([recent_run_json(r) for r in rows], indent=2, default=_json_value))
    else:
        click.echo(recent_runs_table(rows))


def _json_value(value: object) -> str:
    """``--json``'s text for what JSON lacks: times in ISO 8601, like every other --json."""
    from datetime import datetime

    return value.isoformat() if isinstance(value, datetime) else str(value)


@main.command(epilog=PIPELINE_EXIT_CODES)
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(dir_okay=False),
    help="Suite to run instead of the bundled examples/demo-suite.yaml.",
)
@click.option("--processes", default=2, show_default=True, type=count(1, 32))
@click.option("--threads", default=8, show_default=True, type=count(1, 256))
def demo(suite_path: str | None, processes: int, threads: int) -> None:
    """Run the bundled example suite end to end on this machine.

    Migrates the database (embedded by default), starts worker processes and a local
    chat-like HTTP endpoint, runs the suite with live progress and prints the summary.
    Some tests fail on purpose. Exits 0 when every test ended as the suite expects.
    """
    import sys

    from rhesis_pipeline.demo import run_demo

    _import_from_cwd()
    use_database(migrated=False)
    sys.exit(run_demo(suite_path=suite_path, processes=processes, threads=threads))
