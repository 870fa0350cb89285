"""Acting as a tenant: Postgres row-level security decides what a session sees.

Migration 0005 enables row-level security on the tables that hold tenant data (runs,
results, queue messages) with policies for the role ``rhesis_tenant``: a session acting
as it sees and changes only the rows of the organization in ``app.current_organization``,
and nothing when that is unset or empty. The *role* is what subjects a session to the
policies — the setting only selects the organization, and any session may set it — so
every tenant read here first does ``SET LOCAL ROLE rhesis_tenant``, then sets
``app.current_organization`` and ``app.current_user``, all local to the transaction (a
pooled connection goes back as it was). A reader that forgets a filter cannot leak:
there is no ``WHERE organization_id = …`` to forget, another organization's run simply
is not there.

The system role (the tables' owner: workers, scheduler, ``migrate``, operators) is not
subject to the policies and sees every row; it may act as a tenant because the migration
grants it ``rhesis_tenant``. A web backend's database user is granted ``rhesis_tenant``
and calls :func:`act_as_tenant` in its own transaction (or runs the two statements
itself), or takes a :func:`tenant_session`.

:mod:`rhesis_pipeline.storage.tenant_context` is something else: the tenant *context*
that travels with
messages to the workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from rhesis_pipeline.errors import InvalidSubmission, PermissionDenied
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.driver_errors import translate_errors
from rhesis_pipeline.storage.queries import Q

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: The role whose sessions row-level security restricts to one organization.
TENANT_ROLE = "rhesis_tenant"


def _organization(organization_id: Any) -> str:
    if not isinstance(organization_id, str) or not organization_id.strip():
        raise InvalidSubmission(
            f"organization_id must be a non-empty string, got {organization_id!r}"
        )
    return organization_id


def act_as_tenant(conn: Any, organization_id: str, user_id: str | None = None) -> None:
    """Make the transaction open on *conn* act for *organization_id* until it ends.

    *conn*: a SQLAlchemy ``Connection`` or ``Session`` (a web backend's, in its request
    transaction). Runs ``SET LOCAL ROLE rhesis_tenant`` and sets
    ``app.current_organization`` and ``app.current_user`` (empty when *user_id* is None)
    with ``set_config(…, true)``. Raises InvalidSubmission for an empty organization,
    PermissionDenied if the database user is not a member of ``rhesis_tenant``.
    """
    org = _organization(organization_id)
    try:
        with translate_errors():
            conn.execute(Q["become_tenant"])
    except PermissionDenied as exc:
        raise PermissionDenied(
            f"this database user may not act as {TENANT_ROLE}: grant it the role "
            f"(GRANT {TENANT_ROLE} TO <user>; migrate grants it to the role that runs it)"
        ) from exc
    with translate_errors():
        conn.execute(Q["set_tenant"], {"organization_id": org, "user_id": user_id or ""})


@contextmanager
def begin(organization_id: str | None = None, user_id: str | None = None) -> Iterator[Connection]:
    """A transaction that commits on success: as *organization_id*'s tenant (see
    :func:`act_as_tenant`), or as the system role (every row) when it is None."""
    with db.begin() as conn:
        if organization_id is not None:
            act_as_tenant(conn, organization_id, user_id)
        yield conn


@contextmanager
def connect(organization_id: str | None = None) -> Iterator[Connection]:
    """A connection for reading, rolled back at the end: as *organization_id*'s tenant
    (the role and settings last until then), or as the system role when it is None."""
    with db.connect() as conn:
        if organization_id is not None:
            act_as_tenant(conn, organization_id)
        yield conn


@contextmanager
def tenant_session(organization_id: str, user_id: str | None = None) -> Iterator[Session]:
    """A SQLAlchemy ``Session`` on rhesis-pipeline's database whose transaction acts as
    *organization_id*'s tenant (see :func:`act_as_tenant`): what a web backend's request
    hands to ``launch_test_run(session=…)``. Commits when the block ends, rolls back if
    it raises; the role and settings end with the transaction."""
    with Session(engine.get()) as session, session.begin():
        act_as_tenant(session, organization_id, user_id)
        yield session
