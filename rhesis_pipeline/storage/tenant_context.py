"""Tenant context: which organization and user a piece of work belongs to.

The old system lost it between the API and the worker. Here it travels with every
message: the producer sets it (``with tenant_context(org, user): launch_test_run(…)``, or
the ``organization_id``/``user_id`` arguments of launch_test_run), the TenantContext
middleware copies it into ``message.options["tenant"]`` in ``before_enqueue`` (which our
broker honours) and restores it in the worker before the actor runs. Inside an actor,
:func:`current_tenant` reads it; :func:`rhesis_pipeline.storage.db.actor_transaction` sets it on
the database session as ``app.current_organization`` and ``app.current_user``.

In SQL, read those with ``current_setting('app.current_organization', true)``: the second
argument makes a missing setting NULL instead of "unrecognized configuration parameter".
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Tenant:
    organization_id: str | None = None
    user_id: str | None = None

    def as_option(self) -> dict[str, str | None]:
        return {"organization_id": self.organization_id, "user_id": self.user_id}

    @classmethod
    def from_option(cls, value: object) -> Tenant | None:
        if not isinstance(value, dict):
            return None
        org, user = value.get("organization_id"), value.get("user_id")
        if org is None and user is None:
            return None
        return cls(None if org is None else str(org), None if user is None else str(user))


_current: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar(
    "rhesis_tenant", default=None
)


def current_tenant() -> Tenant | None:
    """The tenant of the work in progress: the message being processed, or the block of
    ``tenant_context`` the caller is in. None when there is none."""
    return _current.get()


@contextmanager
def tenant_context(organization_id: str | None, user_id: str | None = None) -> Iterator[Tenant]:
    """Attach a tenant to every message sent inside the block."""
    tenant = Tenant(organization_id, user_id)
    token = _current.set(tenant)
    try:
        yield tenant
    finally:
        _current.reset(token)


def _set(tenant: Tenant | None) -> contextvars.Token[Tenant | None]:
    return _current.set(tenant)


def _reset(token: contextvars.Token[Tenant | None]) -> None:
    _current.reset(token)
