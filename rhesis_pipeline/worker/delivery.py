"""What the consumer hands over with each claimed message: one :class:`Delivery`.

dramatiq passes a ``MessageProxy`` from the consumer to a worker thread (the actor, the
middleware) and back to the consumer (``ack``/``nack``/``requeue``). What the pipeline
needs alongside it — the claim token that fences the outcome, the member's test loaded
with its claim, and how its processing ended for the queue row — is a :class:`Delivery`,
kept in the process's :data:`deliveries` and looked up by the proxy
(``deliveries.of(message)``). Nothing of ours is set on the proxy itself.

Life cycle (one entry per message handed out, none left behind):

* the consumer registers it when it hands the message to dramatiq
  (:meth:`Deliveries.add`);
* the actor and middleware read and mark it while the message is processed;
* the consumer removes it when dramatiq acks, nacks or requeues the message
  (:meth:`Deliveries.pop`), or when a consumer closes after dramatiq dropped its delay
  queue (:meth:`Deliveries.drop`: such messages are neither acked nor requeued).

The registry is per process, not per consumer: dramatiq acks a message on the consumer
that is current when its processing ends, which may be a newer one than the consumer
that handed it out. It is keyed by the proxy's identity, not by message id: a message
whose outcome was refused goes back to its queue and may be handed out again in this
process while the first proxy still waits for its ack; each proxy finds its own claim.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from dramatiq.broker import MessageProxy
from dramatiq.message import Message


class PreloadedStart(NamedTuple):
    """A member's test as ``load_claimed`` loaded it with the claim (the fast path): what
    :func:`rhesis_pipeline.runs.members.start_preloaded` needs to start it without a round
    trip. Field names are the query's column names."""

    #: The test's result status (``queued`` … or a terminal one: already done).
    status: str
    #: The test's definition (the suite's entry).
    test: dict[str, Any]
    #: The run's executor spec.
    executor: dict[str, Any]
    #: The run's status (``IN_PROGRESS`` once this claim started it).
    run_status: str
    #: Whether the run was revoked when the message was claimed.
    cancel_requested: bool


@dataclass(eq=False)
class Delivery:
    """One claimed message handed to dramatiq, and what became of it."""

    #: The proxy handed to dramatiq (its identity is the registry key).
    message: MessageProxy
    #: The queue it was claimed from (``rhesis-tests``, ``rhesis-tests.DQ``).
    queue_name: str
    #: The token of the claim it runs under (None: claimed outside a registered worker,
    #: so no claim was recorded and nothing is fenced).
    claim_token: str | None
    #: A member's test loaded with its claim: the fast path. None on the careful path
    #: (see ``runs.messages.UNSTARTED``), for other actors and without a worker id.
    preloaded: PreloadedStart | None = None
    #: The transaction that stored the outcome also deleted the queue row (careful path):
    #: ``ack`` has nothing to write.
    acked_in_transaction: bool = False
    #: The outcome went to the outcome writer without waiting (fast path, event loop):
    #: its transaction deletes the queue row and ``held.settle`` lets the message go
    #: when it commits; ``ack`` does nothing.
    settled_by_writer: bool = False
    #: Processing failed because the database was unreachable: ``ack``/``nack`` return
    #: the message to its queue instead (no attempt counted; see RhesisRetries).
    release: bool = False
    #: Released without being started: its worker was stopping (SIGTERM).
    unstarted: bool = False

    @property
    def message_id(self) -> str:
        return str(self.message.message_id)

    @property
    def fast_path(self) -> bool:
        """Whether the member runs on the fast path: its test came with its claim."""
        return self.preloaded is not None and self.claim_token is not None

    @property
    def claim(self) -> tuple[str, str | None]:
        """(message id, claim token): what the outcome API fences a result with."""
        return (self.message_id, self.claim_token)


class Deliveries:
    """The deliveries of one process, by proxy; thread-safe (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: id(proxy) -> its delivery. The delivery holds the proxy, so an id cannot be
        #: reused by another object while its entry exists.
        self._by_proxy: dict[int, Delivery] = {}

    def add(self, delivery: Delivery) -> None:
        """Register *delivery* (the consumer, as it hands its message out)."""
        with self._lock:
            self._by_proxy[id(delivery.message)] = delivery

    def of(self, message: MessageProxy | Message[Any]) -> Delivery | None:
        """The delivery of *message*, the proxy dramatiq passes to the middleware and the
        actor (``CurrentMessage`` types it as a Message); None for a message this
        process's consumers did not hand out (another broker's, a test's)."""
        with self._lock:
            return self._by_proxy.get(id(message))

    def pop(self, message: MessageProxy) -> Delivery | None:
        """Remove and return the delivery of *message* (acked, nacked or requeued)."""
        with self._lock:
            return self._by_proxy.pop(id(message), None)

    def drop(self, queue_name: str, message_ids: Iterable[str]) -> int:
        """Remove the deliveries of *message_ids* on *queue_name* (messages dramatiq dropped
        from memory without acking or requeueing them); returns how many."""
        wanted = set(message_ids)
        with self._lock:
            gone = [
                key
                for key, d in self._by_proxy.items()
                if d.queue_name == queue_name and d.message_id in wanted
            ]
            for key in gone:
                del self._by_proxy[key]
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_proxy)

    def reset_after_fork(self) -> None:
        """Forget everything (in a forked child, which holds none of its parent's
        messages); a new lock, as another thread may have held the old one at the fork."""
        self._lock = threading.Lock()
        self._by_proxy = {}


#: The deliveries of this process.
deliveries = Deliveries()

os.register_at_fork(after_in_child=deliveries.reset_after_fork)
