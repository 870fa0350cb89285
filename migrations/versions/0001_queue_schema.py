"""dramatiq-pg's queue schema and the rhesis schema.

Creates exactly what dramatiq-pg 0.12's schema.sql creates (schema ``dramatiq``, enum
``dramatiq.state``, table ``dramatiq.queue`` and its (state, mtime) index; a test compares
the two catalogs), written out here so the migration never changes when the library's
file does. Each statement is guarded, so a database where ``dramatiq-pg init`` already ran
is adopted as it is. Note the library's quirk, kept on purpose: ``mtime`` defaults to
``NOW() AT TIME ZONE 'UTC'``, a UTC wall-clock time stored into a timestamptz column.

Downgrading past this revision drops the queue with every message in it.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS rhesis")
    op.execute("CREATE SCHEMA IF NOT EXISTS dramatiq")
    op.execute(
        """
        DO $$
        BEGIN
            CREATE TYPE dramatiq.state AS ENUM ('queued', 'consumed', 'rejected', 'done');
        EXCEPTION WHEN duplicate_object THEN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS dramatiq.queue (
            message_id uuid PRIMARY KEY,
            queue_name TEXT NOT NULL DEFAULT 'default',
            "state" dramatiq.state,
            mtime TIMESTAMP WITH TIME ZONE DEFAULT (NOW() AT TIME ZONE 'UTC'),
            message JSONB,
            "result" JSONB,
            result_ttl TIMESTAMP WITH TIME ZONE
        )
        """
    )
    op.execute(
        'CREATE INDEX IF NOT EXISTS queue_state_mtime_idx ON dramatiq.queue ("state", mtime)'
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS dramatiq.queue")
    op.execute("DROP TYPE IF EXISTS dramatiq.state")
    op.execute("DROP SCHEMA IF EXISTS dramatiq")
