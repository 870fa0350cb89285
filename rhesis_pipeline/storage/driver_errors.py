"""Driver errors in, :mod:`rhesis_pipeline.errors` out.

The one module that knows psycopg2's and SQLAlchemy's exception classes (the embedded
server's creation race in :mod:`rhesis_pipeline.storage.embedded` excepted): everything
else catches :class:`~rhesis_pipeline.errors.DatabaseUnavailable` and
:class:`~rhesis_pipeline.errors.PermissionDenied`, or asks :func:`is_connection_error`.

* Connection-level errors (the server is gone, the connection broke, the pool has no
  free connection) become ``DatabaseUnavailable`` naming the database and the fix; it
  subclasses dramatiq's ConnectionError, so a worker treats it as a broker outage.
* A refusal of this session's role (SQLSTATE 42501: a missing grant, a row-level
  security policy) becomes ``PermissionDenied``.
* Any other error (a constraint, a bad statement) passes through unchanged: it is a bug
  or a conflict for the caller to handle, not an outage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rhesis_pipeline.errors import DatabaseUnavailable, PermissionDenied
from rhesis_pipeline.settings import redact_url
from rhesis_pipeline.storage import engine

#: SQLSTATE of "permission denied" and of a row-level security policy's refusal.
INSUFFICIENT_PRIVILEGE = "42501"


def _first_line(exc: BaseException, default: str) -> str:
    """The first line of the driver's message (``exc.orig`` for a SQLAlchemy wrapper)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return detail[0] if detail else default


def _database_unavailable(message: str) -> DatabaseUnavailable:
    """``DatabaseUnavailable(message)``. Its ``__init__`` is dramatiq's ConnectionError's,
    which has no annotations; called through this typed signature, strict mypy accepts it."""
    make: Callable[[str], DatabaseUnavailable] = DatabaseUnavailable
    return make(message)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A DatabaseUnavailable for driver error *exc*, naming the database and the fix."""
    first = _first_line(exc, type(exc).__name__)
    try:
        where = redact_url(engine.database_url())
    except Exception:
        where = "the database"
    return _database_unavailable(
        f"cannot use database {where}: {first}. "
        "Check DATABASE_URL and that the server is running and accepts connections"
    )


def is_connection_error(exc: BaseException) -> bool:
    """True if *exc* says the database cannot be reached or the connection broke (as
    opposed to a statement the database refused)."""
    import psycopg2
    from sqlalchemy import exc as sa_exc

    return isinstance(
        exc,
        DatabaseUnavailable
        | psycopg2.OperationalError
        | psycopg2.InterfaceError
        | sa_exc.OperationalError
        | sa_exc.InterfaceError,
    )


def as_unavailable(exc: BaseException) -> DatabaseUnavailable:
    """*exc* (a connection error) as a DatabaseUnavailable."""
    return exc if isinstance(exc, DatabaseUnavailable) else unavailable(exc)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn connection-level driver errors into DatabaseUnavailable, and refusals of this
    session's role (a missing grant, a row-level security policy) into PermissionDenied."""
    import psycopg2
    from sqlalchemy import exc as sa_exc

    try:
        yield
    except sa_exc.TimeoutError as exc:
        raise _database_unavailable(
            f"no free database connection after {engine.settings().db_pool_timeout:g}s: "
            f"the pool of {engine.pool_size()} is exhausted; raise RHESIS_DB_POOL_SIZE"
        ) from exc
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    ) as exc:
        raise unavailable(exc) from exc
    except (sa_exc.DBAPIError, psycopg2.Error) as exc:
        if getattr(getattr(exc, "orig", exc), "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise PermissionDenied(
            f"the database refused this session's role: {_first_line(exc, 'denied')}"
        ) from exc
