"""Entry point of workers and of the scheduler: installs the broker, declares the actors.

    dramatiq rhesis_pipeline.actors      # workers (or bin/worker)
    periodiq rhesis_pipeline.actors      # scheduler (or bin/scheduler, which sets TZ=UTC)

Importing this module installs the rhesis-pipeline broker as dramatiq's global broker.
It does not connect to the database: the pool connects on first use. Nothing in the
package imports it: the actors' names, queues and options are in
:mod:`rhesis_pipeline.runs.messages`, their bodies in :mod:`rhesis_pipeline.worker.tasks`.

Actors:

* ``execute_single_test(run_id, test_id)`` — one member of a run (queue rhesis-tests).
  Retries, backoff and time limit come from the run's options, carried on each message.
* ``collect_results(run_id)`` — the completion callback (queue rhesis-callbacks),
  enqueued exactly once per run by the transaction that stores its last outcome.
* ``sweep()`` — periodic (RHESIS_SWEEP_CRON, every minute): rescues dead workers'
  messages, expires overdue runs, applies retention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from periodiq import cron

from rhesis_pipeline import logs
from rhesis_pipeline.execution.attempt import PermanentExecutionError
from rhesis_pipeline.runs.messages import CALLBACK, MEMBER, SWEEP, ActorSpec
from rhesis_pipeline.storage import engine
from rhesis_pipeline.worker import tasks
from rhesis_pipeline.worker.broker import build_broker

broker = build_broker()
dramatiq.set_broker(broker)

if engine.settings().log_format == "json":
    # The scheduler (periodiq) has set up its logging before importing this module and
    # never boots a worker process: its lines become JSON here. (Worker processes are
    # configured again at boot, by LogContext.)
    logs.configure_worker_logging(engine.settings().log_level, "json")


def _declare(fn: Callable[..., Any], spec: ActorSpec, **extra: Any) -> dramatiq.Actor[Any, Any]:
    """The actor that runs *fn* as *spec* declares it (name, queue, options)."""
    actor: dramatiq.Actor[Any, Any] = dramatiq.actor(
        fn, actor_name=spec.name, queue_name=spec.queue_name, **spec.options, **extra
    )
    return actor


execute_single_test = _declare(tasks.execute_single_test, MEMBER, throws=(PermanentExecutionError,))
collect_results = _declare(tasks.collect_results, CALLBACK)
sweep = _declare(tasks.sweep, SWEEP, periodic=cron(engine.settings().sweep_cron))
