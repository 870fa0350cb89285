"""Entry point of workers and of the scheduler; declares every actor.

    dramatiq rhesis_pipeline.actors      # workers (or bin/worker)
    periodiq rhesis_pipeline.actors      # scheduler (or bin/scheduler, which sets TZ=UTC)

Importing this module installs the rhesis-pipeline broker as dramatiq's global broker.
It does not connect to the database: the pool connects on first use.

Actors:

* ``execute_single_test(run_id, test_id)`` — one member of a run (queue rhesis-tests).
  Retries, backoff and time limit come from the run's options, carried on each message.
* ``collect_results(run_id)`` — the completion callback (queue rhesis-callbacks),
  enqueued exactly once per run by the transaction that stores its last outcome.
* ``sweep()`` — periodic (RHESIS_SWEEP_CRON, every minute): rescues dead workers'
  messages, expires overdue runs, applies retention.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from . import cancellation, db, executors, metrics, queues, runs
from .broker import build_broker
from .consumer import ACKED_IN_TRANSACTION, CLAIM_TOKEN
from .identity import worker_id
from .maintenance.sweeper import Sweeper

logger = logging.getLogger(__name__)

broker = build_broker()
dramatiq.set_broker(broker)


@dramatiq.actor(
    queue_name=queues.TESTS,
    max_retries=2,
    time_limit=60_000,
    throws=(executors.PermanentExecutionError,),
)
def execute_single_test(run_id: str, test_id: str) -> None:
    """Run one test of a run, evaluate its metrics, store its outcome (passed or failed).

    An exception fails the attempt; dramatiq retries it with backoff and, after the last
    attempt, MemberOutcomes stores ``error``. A PermanentExecutionError (an HTTP 4xx) is
    not retried. A redelivered member whose outcome is already stored does nothing. A
    member of a revoked run is stored as ``cancelled`` without executing; one executing
    when its run is revoked is interrupted (:mod:`rhesis_pipeline.cancellation`).
    """
    message = CurrentMessage.get_current_message()
    assert message is not None, "CurrentMessage middleware is missing"
    me = worker_id()
    attempts = message.options.get("retries", 0) + 1
    start = runs.start_member(run_id, test_id)
    if start is None:
        logger.info("test %s of run %s already has its outcome; skipping", test_id, run_id)
        return
    claim = (message.message_id, getattr(message, CLAIM_TOKEN, None))

    def store(status: str, **fields) -> None:
        recorded = runs.record_outcome(
            run_id,
            test_id,
            status=status,
            worker=me,
            ack=(message.message_id, message.queue_name),
            claim=claim,
            **fields,
        )
        if recorded.acked:
            setattr(message, ACKED_IN_TRANSACTION, True)

    if start.cancel_requested:
        store("cancelled", error="run cancelled")
        return
    try:
        with cancellation.executing(run_id):
            execution = executors.execute(start.executor, start.test)
    except cancellation.RunCancelled:
        # The run was revoked while this member executed: its test is already stored as
        # cancelled (so this outcome is refused); what matters is the ack.
        logger.warning("test %s of run %s interrupted: the run was revoked", test_id, run_id)
        store("cancelled", error="run revoked while this test was executing")
        return
    status, verdicts = execution.status, execution.metrics
    if start.test.get("metrics"):
        passed, verdicts = metrics.evaluate(start.test["metrics"], execution)
        if not passed:
            status = "failed"
    store(
        status,
        output=execution.output,
        metrics=verdicts,
        duration_ms=execution.duration_ms,
        attempts=attempts,
        started_at=start.started_at,
    )


@dramatiq.actor(
    queue_name=queues.CALLBACKS,
    max_retries=10,
    min_backoff=500,
    max_backoff=30_000,
    time_limit=300_000,
)
def collect_results(run_id: str) -> None:
    """Finish a run: aggregate its results, set its status, call run-finished hooks.

    Harmless if delivered twice: a run already final is left as it is.
    """
    summary = runs.finish_run(run_id)
    if summary is not None:
        runs.run_hooks(summary)


@dramatiq.actor(
    queue_name=queues.MAINTENANCE,
    periodic=cron(db.settings().sweep_cron),
    max_retries=0,
    time_limit=10 * 60 * 1000,
)
def sweep() -> None:
    """Rescue dead workers' messages, expire overdue runs, apply retention (one sweep at
    a time; a second one started meanwhile does nothing)."""
    Sweeper.from_settings().run_once()
