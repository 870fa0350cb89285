"""What both command-line tools share: error handling, exit codes, ``--org``, ``--json``
output, and the announcement of the database used."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rhesis_pipeline.errors import RhesisError
from rhesis_pipeline.storage import engine, migrate

#: The exit codes of ``rhesis-pipeline`` (``run`` has its own, in its --help).
PIPELINE_EXIT_CODES = """\b
Exit codes:
  0   success
  1   failure (an operation failed or problems were found)
  2   usage error, invalid setting, or an unknown run id
  3   database unreachable (or the embedded server did not start)
  4   database not migrated (run `rhesis-pipeline migrate`)
  130 interrupted (Ctrl-C)
"""

#: The exit codes of ``rhesis-monitor`` (:class:`MonitorGroup`).
MONITOR_EXIT_CODES = """\b
Exit codes:
  0   success, nothing wrong found
  1   problems found (check, health, fix, clean without --force), or an
      operation failed (database unreachable or not migrated)
  2   usage error, invalid setting, or an unknown run id
  130 interrupted (Ctrl-C); a revocation under way is rolled back whole
"""

#: ``--max-hours`` of the monitor's commands that judge runs stuck.
MAX_HOURS_HELP = (
    "Stuck threshold in hours: a run QUEUED or IN_PROGRESS this long, or without "
    "progress this long, is stuck."
)

F = TypeVar("F", bound=Callable[..., Any])


class RhesisGroup(click.Group):
    """A click group that turns RhesisError into one line on stderr and its exit code,
    and Ctrl-C into exit code 130, instead of a traceback."""

    def exit_code_for(self, exc: RhesisError) -> int:
        return exc.exit_code

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RhesisError as exc:
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(self.exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
            ctx.exit(130)


class MonitorGroup(RhesisGroup):
    """rhesis-monitor's exit codes: 2 for usage and settings, 1 for every other failure."""

    def exit_code_for(self, exc: RhesisError) -> int:
        return 2 if exc.exit_code == 2 else 1


def _organization(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def org_option(action: str = "Read") -> Callable[[F], F]:
    """``--org ORG``: act as organization ORG's tenant (role rhesis_tenant, row-level
    security), so that only its runs exist for the command."""
    return click.option(
        "--org",
        "organization_id",
        metavar="ORG",
        callback=_organization,
        help=f"{action} as organization ORG's tenant (role rhesis_tenant, row-level "
        "security): another organization's runs are not found.",
    )


def use_database(*, migrated: bool = True) -> None:
    """Resolve the database, say on stderr which one is used, and (by default) check that
    it is reachable and migrated. Raises RhesisError subclasses with one-line messages."""
    engine.settings()  # validate settings before anything else
    ctx = click.get_current_context(silent=True)
    program = ctx.find_root().info_name if ctx and ctx.find_root().info_name else None
    engine.announce_database(sys.stderr, program or "rhesis-pipeline")
    if migrated:
        migrate.check_migrated()


def emit_json(data: Any) -> None:
    """Print *data* as one indented JSON object (values JSON lacks, such as times, as
    their ``str()``): the output of a ``--json`` read command."""
    click.echo(json.dumps(data, indent=2, default=str))


def base_queue(name: str) -> str:
    """The queue a delay queue (``<name>.DQ``) or dead-letter queue (``.XQ``) belongs to:
    dramatiq's ``q_name``, whose missing type hints --strict refuses to call."""
    from dramatiq.common import q_name

    base: str = q_name(name)  # type: ignore[no-untyped-call, unused-ignore]
    return base
