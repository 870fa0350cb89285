"""A dramatiq RateLimiterBackend on Postgres (table ``rhesis.rate_limits``).

dramatiq ships Redis, Memcached and in-memory (stub) backends only, so its Barrier,
``group(...).add_completion_callback(...)`` (GroupCallbacks middleware) and
ConcurrentRateLimiter needed Redis. With this backend they work across processes with
Postgres alone::

    from dramatiq.rate_limits import ConcurrentRateLimiter
    from rhesis_pipeline.worker.rate_limits import PostgresRateLimiterBackend
    mutex = ConcurrentRateLimiter(PostgresRateLimiterBackend(), "llm-api", limit=4)

Semantics follow dramatiq's stub backend: an absent or expired key counts as 0 (or as
missing, for ``add``); every successful write sets the key's expiry to now + ttl. Each
operation is one transaction that first takes a transaction-level advisory lock on each
key it touches (in sorted order, so two operations never deadlock). ``wait`` blocks on
LISTEN; an event stays visible until its key expires, so a waiter that starts listening
after ``wait_notify`` still sees it. Expired keys are deleted by the periodic retention
job (:mod:`rhesis_pipeline.maintenance.retention`).

Note the limits of what it fixes: dramatiq's GroupCallbacks counts *successes* only; a
member that fails for good leaves such a barrier unfired. rhesis-pipeline's own test runs
do not use it (see :mod:`rhesis_pipeline.runs.members`).
"""

from __future__ import annotations

import hashlib
import select
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from dramatiq.rate_limits import RateLimiterBackend
from sqlalchemy.engine import Connection

from rhesis_pipeline.storage import broker_pool, db, driver_errors, statements
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.storage.queries import Q


def _channel(key: str) -> str:
    return "rhesis_rl_" + hashlib.md5(key.encode("utf-8")).hexdigest()


class PostgresRateLimiterBackend(RateLimiterBackend):
    """Stateless: any number of instances, in any number of processes, share the table."""

    def add(self, key: str, value: int, ttl: int) -> bool:
        with db.begin() as conn:
            self._lock(conn, [key])
            if self._get(conn, key) is not None:
                return False
            self._put(conn, key, value, ttl)
            return True

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        with db.begin() as conn:
            self._lock(conn, [key])
            value = (self._get(conn, key) or 0) + amount
            if value > maximum:
                return False
            self._put(conn, key, value, ttl)
            return True

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        with db.begin() as conn:
            self._lock(conn, [key])
            value = (self._get(conn, key) or 0) - amount
            if value < minimum:
                return False
            self._put(conn, key, value, ttl)
            return True

    def incr_and_sum(
        self,
        key: str,
        keys: Callable[[], Iterable[str]] | Iterable[str],
        amount: int,
        maximum: int,
        ttl: int,
    ) -> bool:
        key_list = list(keys() if callable(keys) else keys)
        with db.begin() as conn:
            self._lock(conn, [key, *key_list])
            value = (self._get(conn, key) or 0) + amount
            if value > maximum:
                return False
            others = sum(self._get(conn, k) or 0 for k in key_list)
            if others + amount > maximum:
                return False
            self._put(conn, key, value, ttl)
            return True

    def wait(self, key: str, timeout: int | None) -> bool:
        """Wait up to *timeout* ms (None: for ever) for an event on *key*.

        A lost connection does not end the wait: it connects again (bounded, jittered
        backoff), LISTENs again and checks the table again — an event published while it
        was away is still there until its key expires.
        """
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        outage = Outage(f"rate-limit waiter on {key}", max_s=2.0)
        while True:
            try:
                return self._wait_once(key, deadline)
            except Exception as exc:
                if not driver_errors.is_connection_error(exc):
                    raise
                pause = outage.failed(exc)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise driver_errors.as_unavailable(exc) from exc
                time.sleep(pause)

    def _wait_once(self, key: str, deadline: float | None) -> bool:
        conn = broker_pool.BROKER_POOL.getconn()
        try:
            conn.autocommit = True
            statements.listen(conn, _channel(key))
            # Listening now: an event published from here on wakes us; one published
            # before is still in the table.
            with db.connect() as check:
                if self._get(check, key) is not None:
                    return True
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                readable, _, _ = select.select([conn], [], [], left)
                if readable:
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            broker_pool.BROKER_POOL.putconn(conn, close=conn.closed)

    def wait_notify(self, key: str, ttl: int) -> None:
        with db.begin() as conn:
            self._lock(conn, [key])
            self._put(conn, key, 1, ttl)
            conn.execute(Q["notify_queue"], {"channel": _channel(key), "payload": "event"})

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _lock(conn: Connection, keys: list[str]) -> None:
        for k in sorted(set(keys)):
            conn.execute(Q["rl_lock"], {"key": k})

    @staticmethod
    def _get(conn: Connection, key: str) -> int | None:
        value = conn.execute(Q["rl_get"], {"key": key}).scalar()
        return None if value is None else int(value)

    @staticmethod
    def _put(conn: Connection, key: str, value: int, ttl: int) -> None:
        conn.execute(Q["rl_put"], {"key": key, "value": value, "ttl": timedelta(milliseconds=ttl)})
