"""Worker registry: every worker process registers, holds a liveness lock and heartbeats.

A worker process inserts its row in ``rhesis.workers`` (host, pid, queues) before its
consumers start, then takes the advisory lock ``(WORKER_LOCK_CLASS, lock_id)`` on a
connection of its own and keeps both for its lifetime. A heartbeat thread updates
``heartbeat_at`` every ``RHESIS_HEARTBEAT_INTERVAL_S`` on that connection, and runs the
rescuer (:mod:`rhesis_pipeline.maintenance.rescue`) so that a dead worker's messages are
back in the queue within seconds, not at the next scheduled sweep. A clean stop marks
the row stopped and releases the lock.

A worker is **dead** when its lock is no longer held (the process died: Postgres dropped
its connection and the lock with it — seen at once) or its heartbeat is older than
``RHESIS_HEARTBEAT_TIMEOUT_S`` (a hung process, or one cut off by the network: a
"zombie", whose late results the claim tokens refuse).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from . import db

logger = logging.getLogger(__name__)

#: First key of the two-key advisory lock a live worker holds: (WORKER_LOCK_CLASS, lock_id).
WORKER_LOCK_CLASS = 0x5248

_current: dict[str, Any] = {"registration": None}


def current_worker_id() -> str | None:
    """The id of this process's registration, or None outside a registered worker."""
    registration = _current["registration"]
    return None if registration is None else registration.worker_id


class Registration:
    def __init__(self, queues: list[str]) -> None:
        self.worker_id = str(uuid.uuid4())
        self.queues = sorted(queues)
        self.lock_id: int | None = None
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._conn = db.BROKER_POOL.getconn()
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(
                db.pyformat("register_worker"),
                {
                    "id": self.worker_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": self.queues,
                },
            )
            self.lock_id = cur.fetchone()[0]
            cur.execute("SELECT pg_advisory_lock(%s, %s)", (WORKER_LOCK_CLASS, self.lock_id))
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
        from . import cancellation
        from .maintenance.rescue import Rescuer

        settings = db.settings()
        rescuer = Rescuer.from_settings()
        while not self._stop.wait(settings.heartbeat_interval_s):
            try:
                with self._conn_lock, self._conn.cursor() as cur:
                    cur.execute(db.pyformat("heartbeat"), {"id": self.worker_id})
            except Exception:
                logger.warning("heartbeat of worker %s failed", self.worker_id, exc_info=True)
                continue
            try:
                rescuer.run_once()
            except Exception:
                logger.warning("rescue from the heartbeat failed", exc_info=True)
            try:
                cancellation.interrupt_revoked()
            except Exception:
                logger.warning("checking for revoked runs failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        _current["registration"] = None
        if self._conn is None:
            return
        try:
            with self._conn_lock, self._conn.cursor() as cur:
                cur.execute(db.pyformat("deregister_worker"), {"id": self.worker_id})
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", (WORKER_LOCK_CLASS, self.lock_id))
            logger.info("deregistered worker %s", self.worker_id)
        except Exception:
            logger.warning("could not deregister worker %s", self.worker_id, exc_info=True)
        finally:
            db.BROKER_POOL.putconn(self._conn, close=True)
            self._conn = None
