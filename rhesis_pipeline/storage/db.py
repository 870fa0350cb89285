"""Transactions: how the rest of the package talks to Postgres.

``with db.begin() as conn`` (commits on success, rolls back on error),
``with db.connect() as conn`` (no implicit commit: reads, explicit transactions) and
``with db.actor_transaction() as conn`` (``begin`` with the current tenant exposed to
SQL). Each runs on the process's one pool and turns driver errors into
:mod:`rhesis_pipeline.errors` exceptions.

The rest of the storage layer, one job per module:

* :mod:`~rhesis_pipeline.storage.engine` — which database, the settings, the engine and
  its pool, fork handling;
* :mod:`~rhesis_pipeline.storage.driver_errors` — driver errors in, our errors out;
* :mod:`~rhesis_pipeline.storage.statements` — prepared statements of the hot path;
* :mod:`~rhesis_pipeline.storage.bulk` — COPY of a submission's rows;
* :mod:`~rhesis_pipeline.storage.broker_pool` — raw connections for dramatiq-pg;
* :mod:`~rhesis_pipeline.storage.queries` — the named SQL of ``sql/queries.sql``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.driver_errors import translate_errors
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.storage.tenant_context import current_tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@contextmanager
def begin() -> Iterator[Connection]:
    """A connection inside a transaction that commits on success, rolls back on error."""
    with translate_errors(), engine.get().begin() as conn:
        yield conn


@contextmanager
def actor_transaction() -> Iterator[Connection]:
    """A transaction with the current tenant set as ``app.current_organization`` and
    ``app.current_user`` (empty strings when there is none), local to the transaction."""
    tenant = current_tenant()
    with begin() as conn:
        conn.execute(
            Q["set_tenant"],
            {
                "organization_id": (tenant and tenant.organization_id) or "",
                "user_id": (tenant and tenant.user_id) or "",
            },
        )
        yield conn


@contextmanager
def connect() -> Iterator[Connection]:
    """A connection without an implicit commit (read-only work, explicit transactions)."""
    with translate_errors(), engine.get().connect() as conn:
        yield conn
