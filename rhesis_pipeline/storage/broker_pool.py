"""Raw psycopg2 connections for dramatiq-pg, lent from the engine's one pool.

dramatiq-pg's broker wants a psycopg2 pool (``getconn``/``putconn``/``minconn``). A second
pool beside SQLAlchemy's would double the connections a process holds and ignore
``RHESIS_DB_POOL_SIZE``; :class:`BrokerPool` serves the same connections as the engine
(:mod:`rhesis_pipeline.storage.engine`) instead.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.driver_errors import translate_errors

if TYPE_CHECKING:
    from sqlalchemy.pool import PoolProxiedConnection


class BrokerPool:
    """The psycopg2 pool interface dramatiq-pg expects, served from the engine's pool.

    The consumers and the rate limiter's ``wait`` borrow connections that they switch to
    autocommit and LISTEN on (and tune, for the consumer); such a connection is closed
    when returned, so the next borrower never inherits that state.
    """

    #: dramatiq-pg's pool_sanitizer walks ``minconn`` idle connections after a
    #: disconnect; here a broken connection raises and SQLAlchemy invalidates the pool.
    minconn = 0

    def __init__(self) -> None:
        #: Connections lent out: {id of the psycopg2 connection: its pool checkout}.
        self._borrowed: dict[int, PoolProxiedConnection] = {}
        self._lock = threading.Lock()

    def getconn(self) -> Any:
        """A psycopg2 connection checked out of the engine's pool."""
        with translate_errors():
            fairy = engine.get().raw_connection()
        raw = fairy.dbapi_connection
        with self._lock:
            self._borrowed[id(raw)] = fairy
        return raw

    def putconn(self, conn: Any, key: object = None, close: bool = False) -> None:
        """Give *conn* back: to the pool if it is as it was lent, else closed (*close*,
        autocommit or already closed). *key* is psycopg2's pool argument, unused."""
        with self._lock:
            fairy = self._borrowed.pop(id(conn), None)
        if fairy is None:  # not ours (or returned twice): just close it
            if not conn.closed:
                conn.close()
            return
        if conn.closed or close or conn.autocommit:
            # A consumer's or waiter's connection (autocommit, LISTEN, session planner
            # settings) is closed rather than handed to the next borrower.
            fairy.invalidate()
            return
        fairy.close()

    def closeall(self) -> None:
        """Close the engine's idle connections (dramatiq-pg's broker close)."""
        engine.dispose()


#: The process's one BrokerPool (dramatiq-pg's interface over the engine's pool).
BROKER_POOL = BrokerPool()
