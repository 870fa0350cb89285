"""The consumer: dramatiq's ``Consumer`` interface over ``dramatiq.queue``.

One consumer per queue and process (dramatiq starts one per declared queue and delay
queue). Each call of ``__next__`` does one round of:

1. write the acks and nacks worker threads queued (:mod:`.acks`), and return to the
   queue what this worker claimed but no longer holds, if anything may be
   (:mod:`.held`);
2. claim when the buffer is empty and there is room — up to ``prefetch`` minus what the
   process holds (more for members, whose I/O-bound tests on the event loop hold no
   thread: :mod:`.inflight`) — when a NOTIFY arrived, the last batch was full, or
   every ``POLL_INTERVAL_S`` in case a NOTIFY was missed (a reconnect, a requeue by
   hand) (:mod:`.claims`);
3. hand out one claimed message, registering its
   :class:`~rhesis_pipeline.worker.delivery.Delivery`; or, with nothing to hand out,
   wait for a NOTIFY or a worker thread's ack (:mod:`.connection`) and return None.

Connection loss
---------------
A connection error inside the consumer is handled by the consumer: it drops its
connection, logs one line (:class:`~rhesis_pipeline.storage.outage.Outage`: one when the
database goes, one when it is back), waits a bounded, jittered backoff and tries again —
connecting anew and LISTENing again — while dramatiq's loop goes on (it sees no message).
Had it raised, dramatiq would log a critical line and restart the consumer every three
seconds for the whole outage, and replace its in-memory delay queue each time. That
still happens when the error comes from elsewhere in dramatiq's consumer thread; what
the process holds survives it (:mod:`.held`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from dramatiq.broker import Consumer, MessageProxy

from rhesis_pipeline.runs.messages import MEMBER
from rhesis_pipeline.storage import driver_errors
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.worker import acks, inflight, registry, shutdown
from rhesis_pipeline.worker.claims import MAX_BATCH, Claimed, Claimer
from rhesis_pipeline.worker.connection import ConsumerConnection, Waker
from rhesis_pipeline.worker.delivery import Delivery, deliveries
from rhesis_pipeline.worker.held import PendingAck, held

logger = logging.getLogger(__name__)

#: Seconds between claims when no NOTIFY arrived (safety net for missed notifications).
POLL_INTERVAL_S = 5.0
#: Delay queues: seconds between polls for messages coming due.
DELAY_POLL_INTERVAL_S = 1.0
#: Delay queues: longest wait, in seconds, for a NOTIFY or an ack in one round.
DELAY_WAIT_S = 0.1


class RhesisConsumer(Consumer):
    """Claims, hands out and finishes the messages of *queue_name*; see the module doc.

    *prefetch*: most messages the process holds of this queue (dramatiq's
    ``--prefetch``; at least 1). *timeout*: longest wait in one round, in ms.
    """

    def __init__(self, *, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.timeout_s = timeout / 1000
        self.is_delay_queue = queue_name.endswith(".DQ")
        self.poll_interval = DELAY_POLL_INTERVAL_S if self.is_delay_queue else POLL_INTERVAL_S
        self._is_member_queue = queue_name == MEMBER.queue_name
        self._held = held(queue_name)
        self._connection = ConsumerConnection(
            queue_name, revocations=self._is_member_queue, on_connect=self._on_connect
        )
        self._claimer = Claimer(queue_name, self._connection)
        #: Claimed and not yet handed out, oldest first.
        self._buffer: deque[Claimed] = deque()
        self._outage = _outages.setdefault(queue_name, Outage(f"consumer of {queue_name}"))
        self._waker = Waker()
        self._held.wake = self._waker.signal
        self._claim_now = True
        self._next_poll = 0.0
        self._closed = False

    # -- dramatiq's Consumer interface -------------------------------------------------

    def __next__(self) -> MessageProxy | None:
        try:
            acks.flush(self._connection, self._held, self.queue_name)
            if self._held.reconcile:
                acks.release_unheld(
                    self._connection, self._held, self.queue_name, self._buffered_ids()
                )
            if shutdown.stopping():
                # SIGTERM: claim and hand out nothing more; what was claimed and not
                # handed out goes back to its queue now, for the workers that stay.
                self._give_back_buffer()
                self._outage.ok()
                self._wait()
                return None
            if not self._buffer:
                self._maybe_claim()
            self._outage.ok()
            if self._buffer:
                return self._hand_out()
            self._wait()
            return None
        except Exception as exc:
            if not driver_errors.is_connection_error(exc):
                raise
            # Handled here, not raised: dramatiq would drop its delay queue, log a critical
            # line and restart the consumer every 3 s for as long as the outage lasts.
            self._connection.drop()
            self._held.reconcile = True
            time.sleep(min(self._outage.failed(exc), self.timeout_s))
            return None

    def ack(self, message: MessageProxy) -> None:
        delivery = deliveries.pop(message)
        if delivery is not None and delivery.settled_by_writer:
            return  # held.settle lets it go when its outcome commits
        if delivery is not None and delivery.release:
            self._release(delivery)
            return
        if delivery is not None and delivery.acked_in_transaction:
            # Marked done by the transaction that stored its outcome: nothing to write.
            self._held.forget([message.message_id])
            self._waker.signal()
            return
        self._held.add_ack(PendingAck("done", message, _token(delivery)))
        self._waker.signal()

    def nack(self, message: MessageProxy) -> None:
        delivery = deliveries.pop(message)
        if delivery is not None and delivery.release:
            self._release(delivery)
            return
        self._held.add_ack(PendingAck("rejected", message, _token(delivery)))
        self._waker.signal()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        ids = []
        for message in messages:
            deliveries.pop(message)
            ids.append(message.message_id)
        acks.requeue(self._connection, self._held, self.queue_name, ids)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            acks.flush(self._connection, self._held, self.queue_name)
            self._give_back_buffer()
            if self._held.reconcile:  # members released unstarted by a stopping worker
                acks.release_unheld(self._connection, self._held, self.queue_name, ())
        except Exception as exc:
            logger.warning(
                "could not flush acks or requeue on close of %s: %s", self.queue_name, exc
            )
        finally:
            # dramatiq requeues its delay queue's messages before closing a consumer, or
            # has just dropped them (a connection error): either way none is held now.
            delayed = self._held.forget_delayed()
            if delayed:
                deliveries.drop(self.queue_name, delayed)
                self._held.reconcile = True
            self._connection.drop()
            self._waker.close()

    # -- claiming and handing out --------------------------------------------------------

    def _maybe_claim(self) -> None:
        now = time.monotonic()
        if not (self._claim_now or now >= self._next_poll):
            return
        holding = self._held.count()
        prefetch = self.prefetch
        loop_runner = inflight.current() if self._is_member_queue else None
        if loop_runner is not None and loop_runner.count():
            # Members on the event loop hold no thread: room for its capacity as well.
            prefetch += loop_runner.capacity
        room = prefetch - holding - len(self._buffer)
        if room <= 0:
            return  # an ack will wake us
        if self._is_member_queue and holding and room < self.prefetch // 2:
            # Members in flight keep the threads busy: claim when half the prefetch is
            # free, so each claim (and each batch of outcomes) carries more messages.
            return
        limit = min(room, MAX_BATCH)
        self._connection.get()  # LISTEN before claiming: no NOTIFY falls in between
        batch = self._claimer.claim(limit, registry.current_worker_id())
        self._next_poll = now + self.poll_interval
        self._claim_now = batch.full
        self._buffer.extend(batch.claimed)

    def _hand_out(self) -> MessageProxy:
        claimed = self._buffer.popleft()
        message = claimed.message
        self._held.hold(message.message_id, delayed="eta" in message.options)
        proxy = MessageProxy(message)
        deliveries.add(
            Delivery(
                message=proxy,
                queue_name=self.queue_name,
                claim_token=claimed.token,
                preloaded=claimed.preloaded,
            )
        )
        return proxy

    def _give_back_buffer(self) -> None:
        """Return what was claimed and not handed out to its queue (uncounted)."""
        if self._buffer:
            ids = self._buffered_ids()
            self._buffer.clear()
            acks.requeue(self._connection, self._held, self.queue_name, ids)

    def _buffered_ids(self) -> list[str]:
        return [claimed.message.message_id for claimed in self._buffer]

    def _release(self, delivery: Delivery) -> None:
        """Return *delivery*'s message to its queue instead of finishing it: processing
        failed because the database was unreachable, or this worker is stopping and did
        not start it (see ``Delivery.release``)."""
        self._held.forget([delivery.message_id])
        self._held.reconcile = True
        if delivery.unstarted:
            logger.info(
                "message %s on %s goes back to its queue unstarted: this worker is stopping",
                delivery.message_id,
                self.queue_name,
            )
        else:
            logger.warning(
                "message %s on %s goes back to its queue: the database was unreachable "
                "while it was processed (no attempt counted)",
                delivery.message_id,
                self.queue_name,
            )
        self._waker.signal()

    # -- waiting -------------------------------------------------------------------------

    def _on_connect(self) -> None:
        self._claim_now = True  # anything enqueued before LISTEN is claimed now
        # A new connection: whatever the last one's loss dropped from memory goes back.
        self._held.reconcile = True

    def _wait(self) -> None:
        self._connection.get()
        if self._held.acks or self._held.reconcile:
            return
        timeout = min(self.timeout_s, DELAY_WAIT_S) if self.is_delay_queue else self.timeout_s
        if self._connection.wait(timeout, self._waker):
            self._claim_now = True


def _token(delivery: Delivery | None) -> str | None:
    """The claim token an ack is fenced with (None: a message not handed out here)."""
    return None if delivery is None else delivery.claim_token


#: queue name -> the Outage of its consumers (one per queue, across consumer swaps).
_outages: dict[str, Outage] = {}
