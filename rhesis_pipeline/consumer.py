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
  so that a claim walks the (state, mtime) index and stops after ``limit`` rows (see
  :func:`rhesis_pipeline.db.execute_prepared`); with stale statistics the planner had
  chosen to sort every queued row on each claim (quadratic in the backlog).

A claimed message stays ``consumed`` if its worker dies; returning such messages to the
queue is the sweeper's job (it decides by the worker's liveness, not by age).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue

import psycopg2
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import current_millis
from dramatiq.message import Message

from . import db, registry
from .errors import DatabaseUnavailable

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

#: Attribute set on a MessageProxy whose queue row was marked done by the transaction
#: that stored its outcome (see rhesis_pipeline.outcomes), so ``ack`` has nothing to do.
ACKED_IN_TRANSACTION = "_rhesis_acked_in_transaction"


def channel(queue_name: str) -> str:
    """The NOTIFY channel that wakes the consumers of *queue_name*."""
    return f"dramatiq.{queue_name}.enqueue"


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
        self._outstanding: set[str] = set()
        self._outstanding_lock = threading.Lock()
        self._acks: SimpleQueue[tuple[str, Message]] = SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._claim_now = True
        self._next_poll = 0.0
        self._closed = False

    # -- dramatiq's Consumer interface -------------------------------------------------

    def __next__(self):
        try:
            self._flush_acks()
            if not self._buffer:
                self._maybe_claim()
            if self._buffer:
                return self._hand_out()
            self._wait()
            return None
        except psycopg2.OperationalError as exc:
            self._drop_listen_conn()
            raise db.unavailable(exc) from exc
        except DatabaseUnavailable:
            self._drop_listen_conn()
            raise

    def ack(self, message) -> None:
        if getattr(message, ACKED_IN_TRANSACTION, False):
            # Marked done by the transaction that stored its outcome: nothing to write.
            with self._outstanding_lock:
                self._outstanding.discard(message.message_id)
            self._signal()
            return
        self._acks.put(("done", message))
        self._signal()

    def nack(self, message) -> None:
        self._acks.put(("rejected", message))
        self._signal()

    def requeue(self, messages) -> None:
        ids = [m.message_id for m in messages]
        if not ids:
            return
        self._execute(
            "requeue_messages",
            {"ids": ids, "queue_name": self.queue_name, "channel": channel(self.queue_name)},
        )
        with self._outstanding_lock:
            self._outstanding.difference_update(ids)
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
        except Exception:
            logger.warning(
                "could not flush acks or requeue on close of %s", self.queue_name, exc_info=True
            )
        finally:
            self._drop_listen_conn()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- claiming ------------------------------------------------------------------

    def _maybe_claim(self) -> None:
        now = time.monotonic()
        if not (self._claim_now or now >= self._next_poll):
            return
        with self._outstanding_lock:
            room = self.prefetch - len(self._outstanding) - len(self._buffer)
        if room <= 0:
            return  # an ack will wake us
        limit = min(room, MAX_BATCH)
        self._ensure_listening()  # LISTEN before claiming: no NOTIFY falls in between
        due_before = current_millis() + (DELAY_HORIZON_MS if self.is_delay_queue else 0)
        rows = self._execute(
            "claim_messages",
            {
                "queue_name": self.queue_name,
                "limit": limit,
                "check_eta": self.is_delay_queue,
                "due_before_ms": due_before,
                "worker_id": registry.current_worker_id(),
            },
        )
        self._next_poll = now + self.poll_interval
        self._claim_now = len(rows) == limit
        poison: list[tuple[str, str]] = []
        for message_id, raw, token, _ in rows:
            message = self._decode(str(message_id), raw, poison)
            if message is not None:
                self._buffer.append((message, None if token is None else str(token)))
        if poison:
            self._reject_poison(poison)

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

    def _hand_out(self) -> MessageProxy:
        message, token = self._buffer.popleft()
        with self._outstanding_lock:
            self._outstanding.add(message.message_id)
        proxy = MessageProxy(message)
        setattr(proxy, CLAIM_TOKEN, token)
        return proxy

    # -- acks ------------------------------------------------------------------------

    def _flush_acks(self) -> None:
        done: list[tuple[str, str | None]] = []
        rejected: list[tuple[str, str | None, str]] = []
        while True:
            try:
                state, message = self._acks.get_nowait()
            except Empty:
                break
            token = getattr(message, CLAIM_TOKEN, None)
            if state == "done":
                done.append((message.message_id, token))
            else:
                rejected.append((message.message_id, token, message.encode().decode("utf-8")))
        if not done and not rejected:
            return
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
        with self._outstanding_lock:
            self._outstanding.difference_update(d[0] for d in done)
            self._outstanding.difference_update(r[0] for r in rejected)

    # -- waiting -------------------------------------------------------------------

    def _signal(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one, that we are done.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _wait(self) -> None:
        conn = self._ensure_listening()
        timeout = min(self.timeout_s, 0.1 if self.is_delay_queue else self.timeout_s)
        if not self._acks.empty():
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
            if conn.notifies:
                conn.notifies.clear()
                self._claim_now = True

    def _execute(self, name: str, params: dict) -> list[tuple]:
        conn = self._ensure_listening()
        return db.execute_prepared_raw(conn, self._prepared, name, params)

    def _ensure_listening(self):
        if self._listen_conn is not None and not self._listen_conn.closed:
            return self._listen_conn
        conn = db.BROKER_POOL.getconn()
        self._prepared = set()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("LISTEN " + _quote_ident(channel(self.queue_name)))
        except Exception:
            db.BROKER_POOL.putconn(conn, close=True)
            raise
        self._listen_conn = conn
        self._claim_now = True  # anything enqueued before LISTEN is claimed now
        return conn

    def _drop_listen_conn(self) -> None:
        if self._listen_conn is not None:
            conn, self._listen_conn = self._listen_conn, None
            try:
                db.BROKER_POOL.putconn(conn, close=conn.closed)
            except Exception:
                logger.debug("closing listen connection failed", exc_info=True)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
