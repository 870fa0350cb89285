"""``rhesis-monitor``: the operator's view of runs, queues and workers, and its repairs.

Every command is a thin layer over :mod:`rhesis_pipeline.monitor` (the same functions a
Python caller uses): it parses options, calls one function, and prints either aligned
tables (ages like "3h12m") or, with ``--json``, one JSON object whose fields the README
lists. Destructive commands (revoke, clean, fix) change nothing without explicit run
ids, ``--force`` or ``--yes``, and accept ``--dry-run``.

:data:`main` is the click group (the ``rhesis-monitor`` entry point); its commands live
by kind in :mod:`.monitor_read` (status, check, inspect, workers, health),
:mod:`.monitor_repair` (revoke, fix, clean, sweep) and :mod:`.monitor_serve`
(serve-health, dashboard), and their text views in the ``text_*`` modules.
"""

from __future__ import annotations

import click

from rhesis_pipeline import __version__
from rhesis_pipeline.cli import monitor_keda, monitor_read, monitor_repair, monitor_serve
from rhesis_pipeline.cli.common import MONITOR_EXIT_CODES, MonitorGroup
from rhesis_pipeline.logs import configure_logging
from rhesis_pipeline.storage import engine


@click.group(
    cls=MonitorGroup,
    context_settings={"auto_envvar_prefix": "RHESIS", "help_option_names": ["-h", "--help"]},
    epilog=MONITOR_EXIT_CODES,
)
@click.version_option(__version__, prog_name="rhesis-monitor")
def main() -> None:
    """Inspect and repair test runs, queues and workers.

    Reads DATABASE_URL (default: the embedded database) and RHESIS_* settings.
    """
    configure_logging(engine.settings().log_level, engine.settings().log_format)


for _command in (
    monitor_read.status,
    monitor_read.check,
    monitor_read.inspect,
    monitor_read.workers,
    monitor_read.health,
    monitor_repair.revoke,
    monitor_repair.fix,
    monitor_repair.clean,
    monitor_repair.sweep,
    monitor_serve.serve_health,
    monitor_serve.dashboard,
    monitor_keda.keda_query,
):
    main.add_command(_command)
