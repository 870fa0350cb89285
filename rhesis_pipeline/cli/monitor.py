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
