"""The consumer: claims messages from ``dramatiq.queue`` in batches.

Why not dramatiq-pg's consumer
------------------------------
dramatiq-pg learns of a message only from its NOTIFY payload (one NOTIFY per message)
or by loading *every* pending message of its queue into memory at start and on a random
1-in-301 idle tick; it claims one message per transaction with a session advisory lock,
acks one per transaction, and keeps two connections per queue. A bulk submission of
10,000 tests with one NOTIFY would sit unseen.

How this one works
------------------
* A NOTIFY on ``dramatiq.<queue>.enqueue`` only *wakes* the consumer; whatever it says.
  So a bulk submission sends one NOTIFY per queue, and dramatiq-pg-style producers
  (a NOTIFY per message) still work.
* On waking, it claims up to ``prefetch - outstanding`` queued messages in one statement
  (``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)``). A full batch means
  more may be waiting: it claims again without waiting. It also polls every
  ``POLL_INTERVAL_S`` in case a NOTIFY was missed (reconnect, a requeue by hand).
* Delay queues (``<queue>.DQ``) claim only messages due within ``DELAY_HORIZON_MS``;
  dramatiq holds them in memory until their eta, then moves them to the real queue.
* Acks and nacks from worker threads are queued and written in one statement per batch
  by the consumer thread. A worker thread's ack wakes the consumer through a pipe, so a
  full prefetch refills at once instead of at the next poll.
* A claimed row that is not a decodable dramatiq message (a poison message) is set to
  ``rejected`` and logged with its id and the reason; it never blocks the queue.
* One connection per consumer, in autocommit: it LISTENs, and claims, acks and requeues
  run on it as prepared single-statement transactions (one round trip each), planned
  so that a claim walks its queue's claim index (``queue_claim``, or for members the
  per-organization one) and stops after ``limit`` rows (see
  :func:`rhesis_pipeline.storage.statements.execute_prepared`); with stale statistics the
  planner had chosen to sort every queued row on each claim (quadratic in the backlog).

A claimed message stays ``consumed`` if its worker dies; returning such messages to the
queue is the rescuer's job (it decides by the worker's liveness, not by age).

Connection loss
---------------
A connection error inside the consumer is handled by the consumer: it drops its
connection, logs one line (:class:`~rhesis_pipeline.storage.outage.Outage`: one when the database
goes, one when it is back), waits a bounded, jittered backoff and tries again — connecting
anew and LISTENing again — while dramatiq's loop goes on (it sees no message). Had it
raised, dramatiq would log a critical line and restart the consumer every three seconds
for the whole outage, and **replace its in-memory delay queue** each time. That still
happens when the error comes from elsewhere in dramatiq's consumer thread (moving a due
delayed message to its queue). Nothing a live worker holds may be lost either way, so what
the process holds is kept per queue, outside the consumer (:class:`_Held`), and survives a
consumer swap:

* the messages handed to dramatiq and not yet acked (executing, waiting in the work
  queue, or in the delay queue — those are forgotten by dramatiq on the swap);
* acks and nacks not yet written: a flush that fails keeps them for the next try.

Each new connection, and any time a message was *released* (see below), the consumer
returns to the queue every message this worker has claimed on its queue but no longer
holds in memory (``release_unheld_claims``): the delay queue's messages dropped by the
swap, a claim whose reply was lost with the connection. A worker is live, so the
rescuer will not do it; the worker does it itself, keeping each message's place.

A message is *released* instead of acked when its processing failed because the
database was unreachable (:class:`rhesis_pipeline.worker.middleware.retries.RhesisRetries`
marks it): it was not the test's fault, so it runs again without counting an attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import deque

from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import current_millis
from dramatiq.message import Message

from rhesis_pipeline.runs.messages import MEMBER, REVOKED_CHANNEL, UNSTARTED, channel
from rhesis_pipeline.storage import broker_pool, driver_errors, engine, statements
from rhesis_pipeline.storage.locks import CLAIM_LOCK_CLASS
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.worker import cancellation, inflight, registry

logger = logging.getLogger(__name__)

#: Seconds between claims when no NOTIFY arrived (safety net for missed notifications).
POLL_INTERVAL_S = 5.0
#: Delay queues: claim messages whose eta is at most this many ms ahead.
DELAY_HORIZON_MS = 10_000
#: Delay queues: seconds between polls for messages coming due.
DELAY_POLL_INTERVAL_S = 1.0
#: Most messages one claim statement takes.
MAX_BATCH = 500


#: Attribute set on each MessageProxy handed out: the token of the claim it runs under.
CLAIM_TOKEN = "_rhesis_claim_token"

#: Attribute set on a MessageProxy whose queue row was deleted (acked) by the transaction
#: that stored its outcome (see rhesis_pipeline.runs.outcomes), so ``ack`` has nothing to do.
ACKED_IN_TRANSACTION = "_rhesis_acked_in_transaction"

#: Attribute set on a member's MessageProxy whose test was loaded with its claim
#: (``load_claimed``): (result status, test, executor, run status, cancel requested).
#: Absent on the careful path (see ``UNSTARTED``) and on other queues.
PRELOADED = "_rhesis_preloaded"

#: Attribute set on a member's MessageProxy whose outcome was handed to the outcome
#: writer without waiting (the fast path): its queue row is deleted by the outcome's
#: transaction, and :func:`settle` lets it go when that commits — ``ack`` does nothing.
SETTLED_BY_WRITER = "_rhesis_settled_by_writer"

#: Attribute set on a MessageProxy whose processing failed because the database was
#: unreachable: ``ack``/``nack`` release it (it goes back to its queue, no attempt
#: counted) instead of finishing it.
RELEASE = "_rhesis_release"


class _Held:
    """What this process holds of one queue; outlives the consumer (see module doc)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: message id -> True if it went to dramatiq's delay queue (it has an eta).
        self.messages: dict[str, bool] = {}
        #: Wakes this queue's current consumer (set by it; see settle).
        self.wake = lambda: None
        #: ("done" | "rejected", message) not yet written.
        self.acks: deque[tuple[str, Message]] = deque()
        #: Claims of this worker on this queue may be held by nobody: release them.
        self.reconcile = False

    def forget(self, message_ids) -> None:
        with self.lock:
            for message_id in message_ids:
                self.messages.pop(message_id, None)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


def held(queue_name: str) -> _Held:
    """The process's :class:`_Held` for *queue_name*."""
    with _held_lock:
        return _held.setdefault(queue_name, _Held())


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
    _held.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


class RhesisConsumer(Consumer):
    def __init__(self, *, broker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.timeout_s = timeout / 1000
        self.is_delay_queue = queue_name.endswith(".DQ")
        self.poll_interval = DELAY_POLL_INTERVAL_S if self.is_delay_queue else POLL_INTERVAL_S
        self._listen_conn = None
        self._prepared: set[str] = set()
        self._buffer: deque[tuple[Message, str | None]] = deque()
        self._is_member_queue = queue_name == MEMBER.queue_name
        #: message id -> what load_claimed returned for it (handed out with the message).
        self._preloaded: dict[str, tuple] = {}
        self._held = held(queue_name)
        settings = engine.settings()
        #: Per-organization cap on claimed members (RHESIS_TENANT_MAX_RUNNING; None: none).
        self._cap = settings.tenant_max_running or None
        #: Members are claimed round-robin by organization (RHESIS_FAIR_CLAIMS; a cap
        #: needs the fair claim, which counts per organization).
        self._fair = (settings.fair_claims or self._cap is not None) and (
            queue_name == MEMBER.queue_name
        )
        self._after_org = ""
        self._outage = _outages.setdefault(queue_name, Outage(f"consumer of {queue_name}"))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._held.wake = self._signal
        self._claim_now = True
        self._next_poll = 0.0
        self._closed = False

    # -- dramatiq's Consumer interface -------------------------------------------------

    def __next__(self):
        try:
            self._flush_acks()
            if self._held.reconcile:
                self._release_unheld()
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
            self._drop_listen_conn()
            self._held.reconcile = True
            time.sleep(min(self._outage.failed(exc), self.timeout_s))
            return None

    def ack(self, message) -> None:
        if getattr(message, SETTLED_BY_WRITER, False):
            return  # settle() lets it go when its outcome commits
        if self._released(message):
            return
        if getattr(message, ACKED_IN_TRANSACTION, False):
            # Marked done by the transaction that stored its outcome: nothing to write.
            self._held.forget([message.message_id])
            self._signal()
            return
        with self._held.lock:
            self._held.acks.append(("done", message))
        self._signal()

    def nack(self, message) -> None:
        if self._released(message):
            return
        with self._held.lock:
            self._held.acks.append(("rejected", message))
        self._signal()

    def _released(self, message) -> bool:
        """Release *message* instead of finishing it if it is marked so (see RELEASE)."""
        if not getattr(message, RELEASE, False):
            return False
        self._held.forget([message.message_id])
        self._held.reconcile = True
        logger.warning(
            "message %s on %s goes back to its queue: the database was unreachable while "
            "it was processed (no attempt counted)",
            message.message_id,
            self.queue_name,
        )
        self._signal()
        return True

    def requeue(self, messages) -> None:
        ids = [m.message_id for m in messages]
        if not ids:
            return
        self._held.forget(ids)
        try:
            self._execute(
                "requeue_messages",
                {"ids": ids, "queue_name": self.queue_name, "channel": channel(self.queue_name)},
            )
        except Exception as exc:
            if not driver_errors.is_connection_error(exc):
                raise
            # Held by nobody now: released by the next connection of this queue's consumer,
            # or by the rescuer once this worker is gone.
            self._held.reconcile = True
            logger.warning(
                "could not requeue %d messages on %s (%s); they go back later",
                len(ids),
                self.queue_name,
                exc,
            )
            return
        logger.info("requeued %d messages on %s", len(ids), self.queue_name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._flush_acks()
            if self._buffer:
                self.requeue([m for m, _ in self._buffer])
                self._buffer.clear()
            self._preloaded.clear()
        except Exception as exc:
            logger.warning(
                "could not flush acks or requeue on close of %s: %s", self.queue_name, exc
            )
        finally:
            # dramatiq requeues its delay queue's messages before closing a consumer, or
            # has just dropped them (a connection error): either way none is held now.
            with self._held.lock:
                delayed = [m for m, is_delayed in self._held.messages.items() if is_delayed]
                for message_id in delayed:
                    del self._held.messages[message_id]
            if delayed:
                self._held.reconcile = True
            self._drop_listen_conn()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- claiming ------------------------------------------------------------------

    def _maybe_claim(self) -> None:
        now = time.monotonic()
        if not (self._claim_now or now >= self._next_poll):
            return
        held = self._held.count()
        prefetch = self.prefetch
        loop_runner = inflight.current() if self._is_member_queue else None
        if loop_runner is not None and loop_runner.count():
            # Members on the event loop hold no thread: room for its capacity as well.
            prefetch += loop_runner.capacity
        room = prefetch - held - len(self._buffer)
        if room <= 0:
            return  # an ack will wake us
        if self._is_member_queue and held and room < self.prefetch // 2:
            # Members in flight keep the threads busy: claim when half the prefetch is
            # free, so each claim (and each batch of outcomes) carries more messages.
            return
        limit = min(room, MAX_BATCH)
        self._ensure_listening()  # LISTEN before claiming: no NOTIFY falls in between
        worker_id = registry.current_worker_id()
        # Members' tests come with their claim, in the same transaction (load_claimed; no
        # claim is recorded, so nothing is loaded, without a worker id).
        with_tests = self._is_member_queue and worker_id is not None
        if self._fair:
            rows = self._claim_fairly(limit, worker_id, with_tests)
        else:
            due_before = current_millis() + (DELAY_HORIZON_MS if self.is_delay_queue else 0)
            claim = (
                "claim_messages",
                {
                    "queue_name": self.queue_name,
                    "limit": limit,
                    "check_eta": self.is_delay_queue,
                    "due_before_ms": due_before,
                    "worker_id": worker_id,
                },
            )
            rows = self._claim_steps(claim, worker_id, with_tests)
        self._next_poll = now + self.poll_interval
        self._claim_now = len(rows) == limit
        poison: list[tuple[str, str]] = []
        claimed: list[tuple[Message, str | None]] = []
        for row in rows:
            message_id, raw, token = str(row[0]), row[1], row[2]
            message = self._decode(message_id, raw, poison)
            if message is None:
                continue
            claimed.append((message, None if token is None else str(token)))
            if with_tests and row[4] is not None and not message.options.get(UNSTARTED):
                self._preloaded[message_id] = tuple(row[4:9])
        if poison:
            self._reject_poison(poison)
        self._buffer.extend(claimed)

    def _claim_steps(self, claim: tuple[str, dict], worker_id, with_tests: bool) -> list[tuple]:
        """Run *claim* (name, params); with *with_tests*, in one round trip and transaction
        with ``load_claimed``, whose rows (the claimed messages and their members' tests)
        are returned instead."""
        if not with_tests:
            return self._execute(*claim)
        conn = self._ensure_listening()
        return statements.execute_prepared_batch_raw(
            conn, self._prepared, [claim, self._load_claimed(worker_id)]
        )

    def _load_claimed(self, worker_id) -> tuple[str, dict]:
        return ("load_claimed", {"worker_id": worker_id, "queue_name": self.queue_name})

    def _claim_fairly(self, limit: int, worker_id, with_tests: bool) -> list[tuple]:
        """Claim round-robin by organization (``claim_fair_messages``), starting after the
        organization served last. With RHESIS_TENANT_MAX_RUNNING, the claim runs in a
        transaction after the queue's claim lock, so that what each organization already
        holds is counted exactly (in a snapshot taken after every earlier claim committed)."""
        params = {
            "queue_name": self.queue_name,
            "limit": limit,
            "after_org": self._after_org,
            "cap": self._cap,
            "worker_id": worker_id,
        }
        if self._cap is None:
            rows = self._claim_steps(("claim_fair_messages", params), worker_id, with_tests)
        else:
            conn = self._ensure_listening()
            conn.autocommit = False
            try:
                statements.execute_prepared_raw(
                    conn,
                    self._prepared,
                    "claim_lock",
                    {"lock_class": CLAIM_LOCK_CLASS, "queue_name": self.queue_name},
                )
                rows = statements.execute_prepared_raw(
                    conn, self._prepared, "claim_fair_messages", params
                )
                if with_tests:
                    rows = statements.execute_prepared_raw(
                        conn, self._prepared, *self._load_claimed(worker_id)
                    )
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = True
        if rows and with_tests:
            # load_claimed's rows are (message_id, message, token, organization, …): the
            # last one served in the rotation is the greatest organization at or before the
            # one served last time (the ring wrapped), else the greatest after it.
            orgs = {row[3] for row in rows}
            wrapped = [org for org in orgs if org <= self._after_org]
            self._after_org = max(wrapped or orgs)
        elif rows:  # claim_fair_messages' rows: (…, place in the rotation, organization)
            self._after_org = max(rows, key=lambda row: row[3])[4]
        return rows

    def _decode(self, message_id: str, raw: str, poison: list[tuple[str, str]]) -> Message | None:
        try:
            message = Message.decode(raw.encode("utf-8"))
            if not isinstance(message.args, tuple | list) or not isinstance(message.kwargs, dict):
                raise ValueError("args must be a list and kwargs an object")
            if str(message.message_id) != message_id:
                raise ValueError(f"payload says message_id {message.message_id}")
            return message
        except Exception as exc:
            poison.append((message_id, f"{type(exc).__name__}: {exc}"[:500]))
            return None

    def _reject_poison(self, poison: list[tuple[str, str]]) -> None:
        self._execute(
            "reject_poison_messages",
            {"ids": [p[0] for p in poison], "reasons": [p[1] for p in poison]},
        )
        for message_id, reason in poison:
            logger.error(
                "rejected poison message %s on queue %s: not a dramatiq message (%s)",
                message_id,
                self.queue_name,
                reason,
            )

    def _release_unheld(self) -> None:
        """Return to the queue what this worker claimed on it but holds no more."""
        worker_id = registry.current_worker_id()
        self._held.reconcile = False
        if worker_id is None:
            return
        with self._held.lock:
            keep = list(self._held.messages)
        keep += [m.message_id for m, _ in self._buffer]
        try:
            rows = self._execute(
                "release_unheld_claims",
                {
                    "worker_id": worker_id,
                    "queue_name": self.queue_name,
                    "held": keep,
                    "channel": channel(self.queue_name),
                },
            )
        except Exception:
            self._held.reconcile = True
            raise
        released = rows[0][0] if rows else 0
        if released:
            logger.warning(
                "returned %d messages this worker had claimed on %s but no longer held "
                "(dropped from memory with a lost connection) to their queue",
                released,
                self.queue_name,
            )

    def _hand_out(self) -> MessageProxy:
        message, token = self._buffer.popleft()
        with self._held.lock:
            self._held.messages[message.message_id] = "eta" in message.options
        proxy = MessageProxy(message)
        setattr(proxy, CLAIM_TOKEN, token)
        preload = self._preloaded.pop(message.message_id, None)
        if preload is not None:
            setattr(proxy, PRELOADED, preload)
        return proxy

    # -- acks ------------------------------------------------------------------------

    def _flush_acks(self) -> None:
        with self._held.lock:
            pending = list(self._held.acks)
            self._held.acks.clear()
        if not pending:
            return
        try:
            self._write_acks(pending)
        except BaseException:
            # Kept for the next try (a later flush, or the next consumer of this queue):
            # acks are fenced by claim token, so writing one twice is harmless.
            with self._held.lock:
                self._held.acks.extendleft(reversed(pending))
            raise
        self._held.forget(message.message_id for _, message in pending)

    def _write_acks(self, pending: list[tuple[str, Message]]) -> None:
        done: list[tuple[str, str | None]] = []
        rejected: list[tuple[str, str | None, str]] = []
        for state, message in pending:
            token = getattr(message, CLAIM_TOKEN, None)
            if state == "done":
                done.append((message.message_id, token))
            else:
                rejected.append((message.message_id, token, message.encode().decode("utf-8")))
        # A message moved to another queue meanwhile (a retry to the delay queue, a
        # delayed message to its queue) is not ours to finish: the SQL checks queue_name.
        if done:
            self._execute(
                "ack_messages",
                {
                    "ids": [d[0] for d in done],
                    "tokens": [d[1] for d in done],
                    "queue_name": self.queue_name,
                },
            )
        if rejected:
            self._execute(
                "nack_messages",
                {
                    "ids": [r[0] for r in rejected],
                    "tokens": [r[1] for r in rejected],
                    "messages": [r[2] for r in rejected],
                    "queue_name": self.queue_name,
                },
            )

    # -- waiting -------------------------------------------------------------------

    def _signal(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one, that we are done.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _wait(self) -> None:
        conn = self._ensure_listening()
        timeout = min(self.timeout_s, 0.1 if self.is_delay_queue else self.timeout_s)
        if self._held.acks or self._held.reconcile:
            return
        if self._take_notifies(conn):  # arrived with the replies of other statements
            return
        readable, _, _ = select.select([conn, self._wake_r], [], [], timeout)
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if conn in readable:
            conn.poll()
            self._take_notifies(conn)

    def _take_notifies(self, conn) -> bool:
        """Act on the NOTIFYs received on *conn*: a revocation is noted for the members
        (see cancellation); anything else means work may be waiting (returns True)."""
        work = False
        while conn.notifies:
            notify = conn.notifies.pop(0)
            if notify.channel == REVOKED_CHANNEL:
                cancellation.note_revoked(notify.payload)
            else:
                work = self._claim_now = True
        return work

    def _execute(self, name: str, params: dict) -> list[tuple]:
        conn = self._ensure_listening()
        return statements.execute_prepared_raw(conn, self._prepared, name, params)

    def _ensure_listening(self):
        if self._listen_conn is not None and not self._listen_conn.closed:
            return self._listen_conn
        conn = broker_pool.BROKER_POOL.getconn()
        self._prepared = set()
        try:
            conn.autocommit = True
            statements.listen(conn, channel(self.queue_name))
            if self._is_member_queue:
                statements.listen(conn, REVOKED_CHANNEL)
        except Exception:
            broker_pool.BROKER_POOL.putconn(conn, close=True)
            raise
        self._listen_conn = conn
        self._claim_now = True  # anything enqueued before LISTEN is claimed now
        # A new connection: whatever the last one's loss dropped from memory goes back.
        self._held.reconcile = True
        return conn

    def _drop_listen_conn(self) -> None:
        if self._listen_conn is not None:
            conn, self._listen_conn = self._listen_conn, None
            try:
                broker_pool.BROKER_POOL.putconn(conn, close=conn.closed)
            except Exception:
                logger.debug("closing listen connection failed", exc_info=True)


#: queue name -> the Outage of its consumers (one per queue, across consumer swaps).
_outages: dict[str, Outage] = {}
