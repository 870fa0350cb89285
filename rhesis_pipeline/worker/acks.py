"""Finishing and returning claimed messages: acks, nacks, requeues and releases.

* Acks and nacks from worker threads are queued (:class:`~rhesis_pipeline.worker.held.Held`)
  and written by the consumer thread in one statement per batch (``ack_messages``,
  ``nack_messages``). Each is fenced by its claim token: an ack from a holder whose claim
  was superseded (the message was rescued and claimed again) changes nothing, so writing
  one twice is harmless and a flush that fails keeps its acks for the next try.
* A message moved to another queue meanwhile (a retry to the delay queue, a delayed
  message to its queue) is not the consumer's to finish: the SQL checks ``queue_name``.
* A requeue (worker shutdown, dramatiq's delay queue on close) returns messages to their
  queue and forgets their claims.
* A *release* (:func:`release_unheld`) returns to the queue every message this worker
  claimed on it but holds no more in memory, at its original place and without counting
  an attempt (see :mod:`rhesis_pipeline.worker.held` for when that happens).

A claimed message stays ``consumed`` if its worker dies; returning such messages to the
queue is the rescuer's job (it decides by the worker's liveness, not by age).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

from rhesis_pipeline.runs.messages import channel
from rhesis_pipeline.storage import driver_errors
from rhesis_pipeline.worker import registry, shutdown
from rhesis_pipeline.worker.connection import ConsumerConnection
from rhesis_pipeline.worker.held import Held, PendingAck

logger = logging.getLogger(__name__)


class ReleasedRow(NamedTuple):
    """The row of ``release_unheld_claims`` (its columns are all named ``count``)."""

    #: Messages returned to the queue.
    released: int
    #: Claims forgotten with them.
    forgotten: int
    #: NOTIFYs sent (one if any went back).
    woken: int


def flush(connection: ConsumerConnection, held: Held, queue_name: str) -> None:
    """Write the acks and nacks waiting in *held*; on failure they wait for the next try
    (a later flush, or the next consumer of this queue) and the error propagates."""
    pending = held.take_acks()
    if not pending:
        return
    try:
        _write(connection, pending, queue_name)
    except BaseException:
        held.put_back(pending)
        raise
    held.forget(ack.message.message_id for ack in pending)


def _write(connection: ConsumerConnection, pending: list[PendingAck], queue_name: str) -> None:
    done = [ack for ack in pending if ack.state == "done"]
    rejected = [ack for ack in pending if ack.state == "rejected"]
    if done:
        connection.execute(
            "ack_messages",
            {
                "ids": [ack.message.message_id for ack in done],
                "tokens": [ack.token for ack in done],
                "queue_name": queue_name,
            },
        )
    if rejected:
        connection.execute(
            "nack_messages",
            {
                "ids": [ack.message.message_id for ack in rejected],
                "tokens": [ack.token for ack in rejected],
                # As it failed: its options carry the traceback.
                "messages": [ack.message.encode().decode("utf-8") for ack in rejected],
                "queue_name": queue_name,
            },
        )


def requeue(
    connection: ConsumerConnection, held: Held, queue_name: str, message_ids: list[str]
) -> None:
    """Return *message_ids* (claimed, not processed) to their queue. Unreachable database:
    they are released later (by the next connection of this queue's consumer, or by the
    rescuer once this worker is gone) and a warning is logged."""
    if not message_ids:
        return
    held.forget(message_ids)
    try:
        connection.execute(
            "requeue_messages",
            {"ids": message_ids, "queue_name": queue_name, "channel": channel(queue_name)},
        )
    except Exception as exc:
        if not driver_errors.is_connection_error(exc):
            raise
        held.reconcile = True
        logger.warning(
            "could not requeue %d messages on %s (%s); they go back later",
            len(message_ids),
            queue_name,
            exc,
        )
        return
    logger.info("requeued %d messages on %s", len(message_ids), queue_name)


def release_unheld(
    connection: ConsumerConnection, held: Held, queue_name: str, buffered: Iterable[str]
) -> None:
    """Return to *queue_name* what this worker claimed on it but holds no more: neither
    in *held* nor in the consumer's *buffered* (claimed, not yet handed out) ids."""
    worker_id = registry.current_worker_id()
    held.reconcile = False
    if worker_id is None:
        return
    keep = held.ids() + list(buffered)
    try:
        rows = connection.execute(
            "release_unheld_claims",
            {
                "worker_id": worker_id,
                "queue_name": queue_name,
                "held": keep,
                "channel": channel(queue_name),
            },
        )
    except Exception:
        held.reconcile = True
        raise
    released = ReleasedRow._make(rows[0]).released if rows else 0
    if released and shutdown.stopping():
        logger.info(
            "returned %d messages on %s to their queue unstarted: this worker is stopping",
            released,
            queue_name,
        )
    elif released:
        logger.warning(
            "returned %d messages this worker had claimed on %s but no longer held "
            "(dropped from memory with a lost connection) to their queue",
            released,
            queue_name,
        )
