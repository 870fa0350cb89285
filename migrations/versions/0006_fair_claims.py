"""Indexes for fair claims across tenants.

Members of runs of different organizations are claimed round-robin by organization
(``claim_fair_messages`` in sql/queries.sql). The organization of a message is
``COALESCE(message->'options'->'tenant'->>'organization_id', '')`` (no tenant: ''). Two
partial indexes serve the claim:

* waiting messages by queue, organization and age: the claim walks the distinct
  organizations with waiting work (one index probe each) and takes each one's oldest;
* claimed messages by queue and organization: counting what an organization has running,
  for ``RHESIS_TENANT_MAX_RUNNING``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ORGANIZATION = "COALESCE(message->'options'->'tenant'->>'organization_id', '')"


def upgrade() -> None:
    op.execute(
        f"CREATE INDEX queue_waiting_by_organization ON dramatiq.queue "
        f"(queue_name, ({ORGANIZATION}), mtime) WHERE state = 'queued'"
    )
    op.execute(
        f"CREATE INDEX queue_claimed_by_organization ON dramatiq.queue "
        f"(queue_name, ({ORGANIZATION})) WHERE state = 'consumed'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX dramatiq.queue_claimed_by_organization")
    op.execute("DROP INDEX dramatiq.queue_waiting_by_organization")
