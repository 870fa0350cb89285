"""Worker registry and claims: liveness-based rescue and fencing.

* ``rhesis.workers``: one row per worker process (host, pid, queues, heartbeat). A live
  worker holds the advisory lock (``WORKER_LOCK_CLASS``, ``lock_id``) on its own
  connection: when the process dies, Postgres drops the connection and the lock with it.
* ``rhesis.claims``: which worker holds each consumed message, with a token per claim. A
  result reported under a superseded token is refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE rhesis.worker_lock_ids AS integer")
    op.execute(
        """
        CREATE TABLE rhesis.workers (
            id uuid PRIMARY KEY,
            lock_id integer NOT NULL UNIQUE DEFAULT nextval('rhesis.worker_lock_ids'),
            host text NOT NULL,
            pid integer NOT NULL,
            queues text[] NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            stopped_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE rhesis.claims (
            message_id uuid PRIMARY KEY,
            worker_id uuid NOT NULL,
            token uuid NOT NULL,
            queue_name text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX claims_worker_idx ON rhesis.claims (worker_id)")


def downgrade() -> None:
    op.execute("DROP TABLE rhesis.claims")
    op.execute("DROP TABLE rhesis.workers")
    op.execute("DROP SEQUENCE rhesis.worker_lock_ids")
