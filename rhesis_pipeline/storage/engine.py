"""The process's database: which one, and its one engine and connection pool.

Which database: ``DATABASE_URL`` from the process's :class:`~rhesis_pipeline.settings.Settings`
(read from the environment on first use, or replaced by :func:`configure`), else the
embedded server (:mod:`rhesis_pipeline.storage.embedded`), started on first use. The
settings live here, not in a module of their own, because they decide the URL and the
pool's size: replacing them must drop the engine built from the old ones.

One pool per process, sized once: a worker sizes it from its threads and queues before
it boots (:func:`set_pool_size`, see :mod:`rhesis_pipeline.worker.middleware.pool_sizing`);
every other process uses ``RHESIS_DB_POOL_SIZE`` or :data:`DEFAULT_POOL_SIZE`. The pool
waits up to ``RHESIS_DB_POOL_TIMEOUT`` seconds for a free connection instead of failing
at once as psycopg2's own pool does.

Nothing here connects at import time: the engine is created on first use (:func:`get`).
In a child after ``fork()`` the engine is forgotten without closing its connections:
they belong to the parent, which may still be using them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from rhesis_pipeline.settings import Settings, redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

#: Connections per process when nothing sized the pool (CLI, web application).
DEFAULT_POOL_SIZE = 5


@dataclass
class _State:
    """What this process knows about its database; None means "not decided yet"."""

    settings: Settings | None = None
    url: str | None = None
    engine: Engine | None = None
    #: Size asked for by set_pool_size (a worker); RHESIS_DB_POOL_SIZE wins over it.
    pool_size: int | None = None


_lock = threading.RLock()
_state = _State()


def settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    with _lock:
        if _state.settings is None:
            _state.settings = Settings.from_env()
        return _state.settings


def database_url() -> str:
    """The normalised SQLAlchemy URL of the database, starting the embedded server if needed."""
    with _lock:
        if _state.url is None:
            s = settings()
            if s.database_url is not None:
                _state.url = s.database_url
            else:
                from rhesis_pipeline.storage import embedded

                _state.url = embedded.database_url(s.data_dir)
        return _state.url


def release_embedded() -> None:
    """Let go of the embedded server if this process started or joined it (a worker
    process's last act; a no-op with DATABASE_URL)."""
    from rhesis_pipeline.storage import embedded

    embedded.release()


def describe_database() -> str:
    """One line saying which database this process uses, password hidden."""
    s = settings()
    url = redact_url(database_url())
    if s.embedded:
        from rhesis_pipeline.storage.embedded import pgdata_dir

        return f"embedded Postgres in {pgdata_dir(s.data_dir)} ({url})"
    return f"{url} (from DATABASE_URL)"


def announce_database(stream: IO[str] | None = None, program: str = "rhesis-pipeline") -> None:
    """Say on *stream* (default stderr) which database this process uses."""
    print(f"{program}: using database {describe_database()}", file=stream or sys.stderr)


def configure(*, settings_: Settings | None = None, url: str | None = None) -> None:
    """Replace the settings and/or database URL (tests, CLI); drops the current engine.

    New settings without a *url* make the URL be derived from them again on next use.
    """
    with _lock:
        dispose()
        if settings_ is not None:
            _state.settings = settings_
        if url is not None:
            _state.url = url
        elif settings_ is not None:
            _state.url = None


def reset() -> None:
    """Forget settings, URL, pool size and engine; the next use reads the environment again."""
    with _lock:
        dispose()
        _state.settings = _state.url = _state.pool_size = None


def set_pool_size(size: int) -> None:
    """Size the process's pool to *size* connections; takes effect now if no connection
    was made yet, else on the next engine (the current one is disposed)."""
    with _lock:
        if _state.pool_size == size:
            return
        _state.pool_size = size
        dispose()


def pool_size() -> int:
    """Connections of the process's pool: ``RHESIS_DB_POOL_SIZE`` when set, else the
    size :func:`set_pool_size` asked for, else :data:`DEFAULT_POOL_SIZE`."""
    explicit = settings().db_pool_size
    if explicit:
        return explicit
    return _state.pool_size or DEFAULT_POOL_SIZE


def get() -> Engine:
    """The process's engine, created on first use."""
    with _lock:
        if _state.engine is None:
            from sqlalchemy import create_engine

            size = pool_size()
            _state.engine = create_engine(
                database_url(),
                pool_size=size,
                max_overflow=0,
                pool_timeout=settings().db_pool_timeout,
                # No pre-ping: it costs a round trip per checkout on the hot path. A
                # connection found dead raises a disconnect error, SQLAlchemy then
                # invalidates the pool, and the message is retried.
                connect_args={
                    "application_name": _application_name(),
                    "connect_timeout": 10,
                    "keepalives": 1,
                    "keepalives_idle": 5,
                    "keepalives_interval": 2,
                    "keepalives_count": 2,
                },
            )
            logger.debug("database pool of %d connections for %s", size, redact_url(database_url()))
        return _state.engine


def dispose() -> None:
    """Close the pool's idle connections and forget the engine."""
    with _lock:
        if _state.engine is not None:
            _state.engine.dispose()
            _state.engine = None


def _after_fork_in_child() -> None:
    # The parent's connections must not be used (or closed) by the child.
    if _state.engine is not None:
        _state.engine.dispose(close=False)
        _state.engine = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _application_name() -> str:
    """``rhesis-pipeline:<program>``, what ``pg_stat_activity`` shows (63 bytes at most)."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"rhesis-pipeline:{prog}"[:63]
