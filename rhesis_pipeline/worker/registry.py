"""Worker registry: every worker process registers, holds a liveness lock and heartbeats.

A worker process inserts its row in ``rhesis.workers`` (host, pid, queues) before its
consumers start, then takes the advisory lock ``(WORKER_LOCK_CLASS, lock_id)`` on a
connection of its own. A heartbeat thread updates ``heartbeat_at`` every
``RHESIS_HEARTBEAT_INTERVAL_S`` on that connection — and does nothing else, so that no
other work (rescue, revocation checks: :mod:`rhesis_pipeline.maintenance`) can delay it.
A clean stop marks the row stopped and releases the lock.

Connection loss
---------------
The liveness lock is a session lock: it vanishes with the heartbeat's connection (a
proxy dropping it, ``pg_terminate_backend``, a database restart or failover). The
heartbeat loop treats that as an event (:class:`rhesis_pipeline.storage.outage.Outage`): it
reconnects with a jittered backoff of at most one heartbeat interval, takes the lock
again, heartbeats at once, and logs one line when it loses the database and one when it
has it again. So a worker is live again within about one heartbeat interval of the
database answering. If the lock is still held by the old, half-dead session (the server
has not noticed yet), it keeps heartbeating and tries the lock again every round.

A worker is **dead** when it stopped, when its heartbeat is older than
``RHESIS_HEARTBEAT_TIMEOUT_S`` (hung, frozen, cut off: a "zombie", whose late results the
claim tokens refuse), or when its lock is not held *and* its heartbeat is older than the
lock grace (it died, and did not reconnect either). "Lock not held" alone means "dead or
reconnecting" — see ``find_orphans`` in sql/queries.sql.

The heartbeat thread also writes this process's liveness file before and after every
round (:mod:`rhesis_pipeline.worker.liveness_file`): the pod's liveness probe reads it
without the database, so a worker that only waits for the database is not restarted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.storage import broker_pool, driver_errors, engine, queries
from rhesis_pipeline.storage.locks import WORKER_LOCK_CLASS
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.worker.liveness_file import DB_WAITING, HOLDING, LOCK_WAITING, LivenessFile

logger = logging.getLogger(__name__)

__all__ = ["WORKER_LOCK_CLASS", "Registration", "current_worker_id"]

_current: dict[str, Any] = {"registration": None}


def current_worker_id() -> str | None:
    """The id of this process's registration, or None outside a registered worker."""
    registration = _current["registration"]
    return None if registration is None else registration.worker_id


class Registration:
    """This worker process's row, liveness lock and heartbeat thread."""

    def __init__(self, queues: list[str]) -> None:
        self.worker_id = str(uuid.uuid4())
        self.queues = sorted(queues)
        self.lock_id: int | None = None
        self.lock_held = False
        self.beats = 0  # successful heartbeats (tests and logs)
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage(f"worker {self.worker_id[:8]} heartbeat", max_s=self._interval())
        self.liveness = LivenessFile(self.worker_id, engine.settings().lock_grace_s)

    @staticmethod
    def _interval() -> float:
        return engine.settings().heartbeat_interval_s

    def start(self) -> None:
        """Register, take the lock, start heartbeating. Raises DatabaseUnavailable if
        the database cannot be reached now (the worker does not start)."""
        with self._conn_lock:
            self._beat()
        self.liveness.write(self._state())
        _current["registration"] = self
        self._thread = threading.Thread(target=self._loop, name="rhesis-heartbeat", daemon=True)
        self._thread.start()
        logger.info(
            "registered worker %s (lock %s) for queues %s",
            self.worker_id,
            self.lock_id,
            ", ".join(self.queues),
        )

    def _loop(self) -> None:
        delay = self._interval()
        while not self._stop.wait(delay):
            # Before the round too: a connect attempt may take its whole timeout.
            self.liveness.write(self._state())
            try:
                with self._conn_lock:
                    self._beat()
            except DatabaseUnavailable as exc:
                delay = self._outage.failed(exc)
                self.liveness.write(DB_WAITING)
                continue
            except Exception:
                logger.exception("heartbeat of worker %s failed", self.worker_id)
                delay = self._interval()
                self.liveness.write(self._state())
                continue
            self._outage.ok()
            self.liveness.write(self._state())
            delay = self._interval()

    def _state(self) -> str:
        """What the liveness file says: the lock held, the lock awaited, or the database."""
        if self._outage.down:
            return DB_WAITING
        return HOLDING if self.lock_held else LOCK_WAITING

    def _beat(self) -> None:
        """One round: (re)connect, (re)register, (re)take the lock, heartbeat."""
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
            with self._conn.cursor() as cur:
                if self.lock_id is None:
                    cur.execute(queries.pyformat("register_worker"), self._row())
                    self.lock_id = cur.fetchone()[0]
                if not self.lock_held:
                    self._take_lock(cur)
                cur.execute(queries.pyformat("heartbeat"), {"id": self.worker_id})
                if cur.fetchone() is None:
                    # Our row was deleted (retention, or by hand): register again.
                    logger.warning(
                        "worker %s was not registered; registering again", self.worker_id
                    )
                    cur.execute(queries.pyformat("register_worker"), self._row())
                    self.lock_id = cur.fetchone()[0]
                    self.lock_held = False
                    self._take_lock(cur)
            self.beats += 1
        except Exception as exc:
            if driver_errors.is_connection_error(exc):
                self._drop_connection()
                raise driver_errors.as_unavailable(exc) from exc
            raise

    def _take_lock(self, cur: Any) -> None:
        cur.execute(
            queries.pyformat("try_worker_lock"),
            {"lock_class": WORKER_LOCK_CLASS, "lock_id": self.lock_id},
        )
        self.lock_held = bool(cur.fetchone()[0])
        if not self.lock_held:
            logger.warning(
                "worker %s: its liveness lock is still held by its previous session; "
                "trying again at the next heartbeat",
                self.worker_id,
            )

    def _row(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
        }

    def _connect(self) -> None:
        conn = broker_pool.BROKER_POOL.getconn()
        conn.autocommit = True
        self._conn = conn
        self.lock_held = False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.lock_held = False
        if conn is not None:
            try:
                broker_pool.BROKER_POOL.putconn(conn, close=True)
            except Exception:
                logger.debug("closing the heartbeat connection failed", exc_info=True)

    def stop(self) -> None:
        """Stop heartbeating, mark the row stopped and release the lock. With the database
        unreachable, the worker counts as dead once its lock grace has passed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.liveness.remove()
        _current["registration"] = None
        with self._conn_lock:
            for attempt in (1, 2):  # a connection found dead is replaced once
                try:
                    if self._conn is None or self._conn.closed:
                        self._connect()
                    with self._conn.cursor() as cur:
                        cur.execute(queries.pyformat("deregister_worker"), {"id": self.worker_id})
                        cur.execute(
                            queries.pyformat("release_worker_lock"),
                            {"lock_class": WORKER_LOCK_CLASS, "lock_id": self.lock_id},
                        )
                    logger.info("deregistered worker %s", self.worker_id)
                    break
                except Exception as exc:
                    self._drop_connection()
                    if attempt == 2 or not driver_errors.is_connection_error(exc):
                        logger.warning(
                            "could not deregister worker %s (%s): it counts as dead once its "
                            "lock grace has passed",
                            self.worker_id,
                            exc,
                        )
            self._drop_connection()
