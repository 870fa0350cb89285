"""What both command-line tools share: error handling, exit codes, database announcement."""

from __future__ import annotations

import sys

import click

from rhesis_pipeline.errors import RhesisError
from rhesis_pipeline.storage import engine, migrate

EXIT_CODES_HELP = """\b
Exit codes:
  0   success
  1   failure (an operation failed or problems were found)
  2   usage error or invalid setting
  3   database unreachable (or the embedded server did not start)
  4   database not migrated (run `rhesis-pipeline migrate`)
  130 interrupted (Ctrl-C)
"""


class RhesisGroup(click.Group):
    """A click group that turns RhesisError into one line on stderr and its exit code,
    and Ctrl-C into exit code 130, instead of a traceback."""

    def exit_code_for(self, exc: RhesisError) -> int:
        return exc.exit_code

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RhesisError as exc:
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(self.exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
            ctx.exit(130)


def _organization(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def org_option(action: str = "Read"):
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
