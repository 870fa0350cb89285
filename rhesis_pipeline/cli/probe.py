"""``rhesis-pipeline probe``: Kubernetes probes answered from the pod itself.

``probe worker`` is the worker container's liveness probe: it reads the liveness files
the worker processes' heartbeat threads write (:mod:`rhesis_pipeline.worker.liveness_file`)
and never connects to the database, so a Postgres failover does not get every worker
restarted, while a worker whose heartbeat thread is gone (or whose process is frozen)
for longer than the lock grace is. It answers in well under a second (the import of the
CLI is most of it).
"""

from __future__ import annotations

import click

from rhesis_pipeline.cli.common import RhesisGroup

PROBE_EXIT_CODES = """\b
Exit codes:
  0   live: every worker process's heartbeat thread went round within its grace
  1   not live: restart the container (the line says which process and why)
  2   usage error or invalid setting
"""


@click.group(cls=RhesisGroup, epilog=PROBE_EXIT_CODES)
def probe() -> None:
    """Kubernetes probes that answer from the pod, without the database."""


@probe.command(epilog=PROBE_EXIT_CODES)
def worker() -> None:
    """Liveness of this pod's worker processes (RHESIS_RUN_DIR), as the registry sees it.

    Fails when no worker process has written its liveness file, or when one's heartbeat
    thread has been silent for longer than the lock grace (3 x RHESIS_HEARTBEAT_INTERVAL_S):
    its thread is gone or its process is frozen. A process that is only waiting for the
    database passes. Run it in the worker's container: `rhesis-entrypoint probe worker`.
    """
    import sys

    from rhesis_pipeline.storage import engine
    from rhesis_pipeline.worker.liveness_file import report

    sys.exit(report(engine.settings().run_dir))
