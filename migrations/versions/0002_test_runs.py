"""Test runs, their per-test results (the fan-in bookkeeping), and the rate-limit table.

* ``rhesis.test_runs``: one row per run, with counters kept by the same transaction that
  stores each terminal outcome (``done``, ``passed`` …), so progress is read without
  counting result rows, and ``done = total`` is decided exactly once.
* ``rhesis.test_results``: one row per test (= per member), created at submission with
  status ``queued`` and moved once to a terminal status. (Which member is running where
  is the queue's business: its message is ``consumed``.)
* ``rhesis.rate_limits``: keys of the Postgres RateLimiterBackend (barriers, limiters).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rhesis.test_runs (
            id uuid PRIMARY KEY,
            organization_id text,
            user_id text,
            name text NOT NULL,
            status text NOT NULL DEFAULT 'QUEUED'
                CHECK (status IN ('QUEUED', 'IN_PROGRESS', 'COMPLETED', 'PARTIAL', 'FAILED',
                                  'CANCELLED')),
            executor jsonb NOT NULL,
            options jsonb NOT NULL DEFAULT '{}',
            total integer NOT NULL CHECK (total > 0),
            done integer NOT NULL DEFAULT 0,
            passed integer NOT NULL DEFAULT 0,
            failed integer NOT NULL DEFAULT 0,
            errored integer NOT NULL DEFAULT 0,
            lost integer NOT NULL DEFAULT 0,
            cancelled integer NOT NULL DEFAULT 0,
            cancel_requested boolean NOT NULL DEFAULT false,
            callback_message_id uuid,
            callback_enqueued_at timestamptz,
            collected_count integer NOT NULL DEFAULT 0,
            summary jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            last_progress_at timestamptz,
            finished_at timestamptz,
            CONSTRAINT test_runs_done_le_total CHECK (done <= total),
            CONSTRAINT test_runs_counts_add_up
                CHECK (passed + failed + errored + lost + cancelled = done)
        )
        """
    )
    op.execute("CREATE INDEX test_runs_created_at_idx ON rhesis.test_runs (created_at DESC)")
    op.execute(
        "CREATE INDEX test_runs_unfinished_idx ON rhesis.test_runs (status, created_at) "
        "WHERE status IN ('QUEUED', 'IN_PROGRESS')"
    )
    op.execute(
        "CREATE INDEX test_runs_tenant_idx ON rhesis.test_runs (organization_id, created_at DESC)"
    )
    op.execute(
        """
        CREATE TABLE rhesis.test_results (
            -- No foreign key to test_runs: its check ran once per row of a bulk
            -- submission. Results are written only with their run, in one transaction.
            run_id uuid NOT NULL,
            test_id text NOT NULL,
            position integer NOT NULL,
            test jsonb NOT NULL,
            status text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'passed', 'failed', 'error', 'lost', 'cancelled')),
            message_id uuid NOT NULL,
            output jsonb,
            metrics jsonb,
            error text,
            attempts integer NOT NULL DEFAULT 0,
            duration_ms double precision,
            worker text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            PRIMARY KEY (run_id, test_id)
        ) WITH (fillfactor = 60)
        """
    )
    # fillfactor 60: every row is updated exactly once (queued -> terminal); the free
    # space lets that update stay on its page (HOT, no index write). No index on status
    # for the same reason: it would make every such update a non-HOT one.
    op.execute(
        """
        CREATE TABLE rhesis.rate_limits (
            key text PRIMARY KEY,
            value bigint NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX rate_limits_expires_at_idx ON rhesis.rate_limits (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE rhesis.rate_limits")
    op.execute("DROP TABLE rhesis.test_results")
    op.execute("DROP TABLE rhesis.test_runs")
