"""``rhesis-monitor keda-query``: the SQL of the worker ScaledObject's postgresql trigger.

It prints :func:`rhesis_pipeline.monitor.keda.waiting_tests_query` and does not connect:
paste its output into the ScaledObject's ``query`` so that it never drifts from the
schema (deploy/kubernetes/base/worker-scaledobject.yaml holds it; a test compares).
"""

from __future__ import annotations

import click

from rhesis_pipeline.cli.common import MONITOR_EXIT_CODES
from rhesis_pipeline.cli.params import TEXT
from rhesis_pipeline.monitor.keda import waiting_tests_query


@click.command("keda-query", epilog=MONITOR_EXIT_CODES)
@click.option(
    "--queue",
    "queues",
    type=TEXT,
    multiple=True,
    help="A queue the worker Deployment serves (repeat; default: all, as RHESIS_QUEUES unset).",
)
def keda_query(queues: tuple[str, ...]) -> None:
    """Print the SQL that KEDA's postgresql scaler runs for the worker Deployment.

    Its one integer is the number of messages waiting or claimed on the queues (and their
    delay queues): replicas = ceil(value / targetQueryValue). Does not connect.
    """
    try:
        click.echo(waiting_tests_query(queues))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--queue'") from None
