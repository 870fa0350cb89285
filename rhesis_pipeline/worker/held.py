"""What this process holds of each queue; it outlives the queue's consumer.

dramatiq replaces a queue's consumer when an error reaches its consumer thread (moving a
due delayed message to its queue while the database is away, for example), and then
**replaces its in-memory delay queue**: the messages it held there are forgotten by the
process while the database still says ``consumed``. Nothing a live worker holds may be
lost that way, so what the process holds is kept per queue here (:class:`Held`), not
in the consumer, and survives a consumer swap:

* the messages handed to dramatiq and not yet acked (executing, waiting in the work
  queue, or in the delay queue — those are forgotten by dramatiq on the swap);
* acks and nacks not yet written: a flush that fails keeps them for the next try
  (:mod:`rhesis_pipeline.worker.acks`).

Each new connection of a consumer, and any time a message was *released*, sets
:attr:`Held.reconcile`: the consumer then returns to the queue every message this worker
claimed on it but no longer holds in memory (``release_unheld_claims``) — the delay
queue's messages dropped by a swap, a claim whose reply was lost with the connection. A
worker is live, so the rescuer will not do it; the worker does it itself, keeping each
message's place.

A message is *released* instead of acked when its processing failed because the
database was unreachable (:class:`rhesis_pipeline.worker.middleware.retries.RhesisRetries`
marks its :class:`~rhesis_pipeline.worker.delivery.Delivery`): it was not the test's
fault, so it runs again without counting an attempt.

A fast-path member's outcome is stored by the outcome writer after its thread moved on;
the writer calls :func:`settle` when it commits (or refuses it for good), and only then
does the process stop holding the message — so what a process holds stays bounded by
its prefetch even though its threads do not wait.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from dramatiq.broker import MessageProxy

logger = logging.getLogger(__name__)


class PendingAck(NamedTuple):
    """An ack or nack that a worker thread asked for and the consumer has not written."""

    #: ``done`` (ack) or ``rejected`` (nack).
    state: Literal["done", "rejected"]
    message: MessageProxy
    #: The claim it ran under (fences the write: a superseded holder changes nothing).
    token: str | None


def _nothing() -> None:
    """The wake-up of a queue that has no consumer yet."""


class Held:
    """What this process holds of one queue (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: message id -> True if it went to dramatiq's delay queue (it has an eta).
        self.messages: dict[str, bool] = {}
        #: Wakes this queue's current consumer (set by it; see settle).
        self.wake: Callable[[], None] = _nothing
        #: Acks and nacks not yet written, oldest first.
        self.acks: deque[PendingAck] = deque()
        #: Claims of this worker on this queue may be held by nobody: release them.
        self.reconcile = False

    def hold(self, message_id: str, *, delayed: bool) -> None:
        """*message_id* was handed to dramatiq (*delayed*: to its delay queue)."""
        with self.lock:
            self.messages[message_id] = delayed

    def forget(self, message_ids: Iterable[str]) -> None:
        """The process no longer holds *message_ids* (acked, requeued, released)."""
        with self.lock:
            for message_id in message_ids:
                self.messages.pop(message_id, None)

    def forget_delayed(self) -> list[str]:
        """Forget the messages held in dramatiq's delay queue (a consumer closes: dramatiq
        requeued them, or dropped them); returns their ids."""
        with self.lock:
            delayed = [m for m, is_delayed in self.messages.items() if is_delayed]
            for message_id in delayed:
                del self.messages[message_id]
        return delayed

    def ids(self) -> list[str]:
        """The ids of the messages held now."""
        with self.lock:
            return list(self.messages)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def add_ack(self, ack: PendingAck) -> None:
        with self.lock:
            self.acks.append(ack)

    def take_acks(self) -> list[PendingAck]:
        """Every pending ack, oldest first; the caller writes them or :meth:`put_back`."""
        with self.lock:
            pending = list(self.acks)
            self.acks.clear()
        return pending

    def put_back(self, pending: list[PendingAck]) -> None:
        """Keep *pending* (a write that failed) ahead of acks added since."""
        with self.lock:
            self.acks.extendleft(reversed(pending))


_held: dict[str, Held] = {}
_held_lock = threading.Lock()


def held(queue_name: str) -> Held:
    """The process's :class:`Held` for *queue_name*."""
    with _held_lock:
        return _held.setdefault(queue_name, Held())


def settle(queue_name: str, message_id: str, stored: bool) -> None:
    """The outcome of fast-path member *message_id* was committed (*stored*: its queue
    row is deleted) or refused for good: the process no longer holds it. A refused
    one goes back to its queue (released, no attempt counted) to run again."""
    h = held(queue_name)
    h.forget([message_id])
    if not stored:
        h.reconcile = True
        logger.error(
            "the outcome of message %s on %s could not be stored; it goes back to its queue",
            message_id,
            queue_name,
        )
    h.wake()


def _reset_after_fork() -> None:
    global _held_lock
    _held.clear()
    _held_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
