"""A consumer's one connection: LISTEN, prepared statements, and waiting for work.

* One connection per consumer, in autocommit: it LISTENs, and claims, acks and requeues
  run on it as prepared single-statement transactions (one round trip each), planned
  so that a claim walks its queue's claim index (``queue_claim``, or for members the
  per-organization one) and stops after ``limit`` rows (see
  :func:`rhesis_pipeline.storage.statements.execute_prepared`); with stale statistics the planner
  had chosen to sort every queued row on each claim (quadratic in the backlog).
* A NOTIFY on ``dramatiq.<queue>.enqueue`` only *wakes* the consumer, whatever it says.
  So a bulk submission sends one NOTIFY per queue, and dramatiq-pg-style producers (a
  NOTIFY per message) still work. The members' consumer also listens for revocations
  (``messages.REVOKED_CHANNEL``) and notes them for the members it claimed
  (:func:`rhesis_pipeline.worker.cancellation.note_revoked`).
* The connection is LISTENing before anything is claimed, so no NOTIFY falls between a
  claim and the LISTEN. A new connection calls *on_connect*: the consumer claims at once
  (anything enqueued before LISTEN) and returns what the last connection's loss dropped
  from memory (:mod:`rhesis_pipeline.worker.held`).
* Worker threads wake a waiting consumer through a pipe (:class:`Waker`): an ack frees
  room in the prefetch, so a full prefetch refills at once instead of at the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Callable, Iterator
from typing import Any

from rhesis_pipeline.runs.messages import REVOKED_CHANNEL, channel
from rhesis_pipeline.storage import broker_pool, statements
from rhesis_pipeline.worker import cancellation

logger = logging.getLogger(__name__)

#: Rows as the prepared-statement runners return them.
Rows = list[tuple[Any, ...]]
#: A named query and its parameters.
Step = tuple[str, dict[str, Any]]


class Waker:
    """A pipe that wakes a consumer waiting in :meth:`ConsumerConnection.wait`."""

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)

    def signal(self) -> None:
        """Wake the consumer (from any thread)."""
        # A full pipe means a wake-up is pending anyway; a closed one, that we are done.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write_fd)


class ConsumerConnection:
    """The LISTENing, autocommit connection of the consumer of *queue_name*."""

    def __init__(
        self, queue_name: str, *, revocations: bool, on_connect: Callable[[], None]
    ) -> None:
        self.queue_name = queue_name
        self._revocations = revocations
        self._on_connect = on_connect
        self._conn: Any = None
        #: The statements prepared on this connection's session.
        self._prepared: set[str] = set()

    def get(self) -> Any:
        """The psycopg2 connection, connected and LISTENing (a new one if it was lost)."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = broker_pool.BROKER_POOL.getconn()
        self._prepared = set()
        try:
            conn.autocommit = True
            statements.listen(conn, channel(self.queue_name))
            if self._revocations:
                statements.listen(conn, REVOKED_CHANNEL)
        except Exception:
            broker_pool.BROKER_POOL.putconn(conn, close=True)
            raise
        self._conn = conn
        self._on_connect()
        return conn

    def execute(self, name: str, params: dict[str, Any]) -> Rows:
        """Run named query *name* (prepared) as its own transaction; its rows."""
        return statements.execute_prepared_raw(self.get(), self._prepared, name, params)

    def execute_batch(self, steps: list[Step]) -> Rows:
        """Run *steps* in one round trip and one transaction; the last one's rows."""
        return statements.execute_prepared_batch_raw(self.get(), self._prepared, steps)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block's :meth:`execute` calls in one transaction, committed at its
        end (rolled back on an exception); then autocommit again."""
        conn = self.get()
        conn.autocommit = False
        try:
            yield
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        finally:
            if not conn.closed:
                conn.autocommit = True

    def wait(self, timeout_s: float, waker: Waker) -> bool:
        """Wait up to *timeout_s* for a NOTIFY or *waker*; True if work may be waiting
        (a NOTIFY other than a revocation arrived)."""
        conn = self.get()
        if self.take_notifies():  # arrived with the replies of other statements
            return True
        readable, _, _ = select.select([conn, waker.fd], [], [], timeout_s)
        if waker.fd in readable:
            waker.drain()
        if conn in readable:
            conn.poll()
            return self.take_notifies()
        return False

    def take_notifies(self) -> bool:
        """Act on the NOTIFYs received: a revocation is noted for the members (see
        cancellation); anything else means work may be waiting (returns True)."""
        work = False
        notifies = self._conn.notifies if self._conn is not None else []
        while notifies:
            notify = notifies.pop(0)
            if notify.channel == REVOKED_CHANNEL:
                cancellation.note_revoked(notify.payload)
            else:
                work = True
        return work

    def drop(self) -> None:
        """Give the connection back (closed); the next :meth:`get` connects anew."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                broker_pool.BROKER_POOL.putconn(conn, close=conn.closed)
            except Exception:
                logger.debug("closing listen connection failed", exc_info=True)
