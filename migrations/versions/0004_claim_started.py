"""Claims record when their member started executing.

``rhesis.claims.started_at`` is set by the statement that loads a member's test (one
round trip, as before). The rescuer uses it: a member whose worker died while *running*
it counts a lost attempt (a test that kills its worker ends as ``error`` after
``max_retries + 1`` such deaths, instead of crash-looping every worker); one that was
only claimed (prefetched) is run again without counting, and never stored as a timeout.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rhesis.claims ADD COLUMN started_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE rhesis.claims DROP COLUMN started_at")
