"""Throughput: a claim index that starts with the queue; storage settings for a busy
queue; message ids of results made by the database.

* ``queue_claim (queue_name, mtime) WHERE state = 'queued'``: a claim on a small queue
  (callbacks, delay queues, maintenance) used to walk dramatiq-pg's ``(state, mtime)``
  index across the waiting messages of *every* queue: with 100,000 members waiting, a
  run's callback waited behind them. This index holds only waiting messages, per queue,
  oldest first: a claim reads exactly the rows it takes. (dramatiq-pg's own index stays:
  the schema remains a superset of dramatiq-pg's.)
* ``fillfactor``: a message's row is updated two or three times in its life (claimed,
  done); room left on its page lets the new version stay on the same page (cheaper
  updates, and heap-only tuples where no indexed column changes). Same for claims
  (started) and runs (counters updated by every batch of outcomes); results have had
  fillfactor 60 since 0002.
* ``autovacuum`` per table, by rows instead of by a fraction of the table: the queue
  churns through its whole size every few minutes under load, so it is vacuumed after a
  fixed number of dead rows, without the cost-based sleep, and analysed often enough
  that the planner knows how many rows wait. These only take effect where the server
  runs autovacuum (``rhesis-monitor health`` warns when it does not).
* ``test_results.message_id`` defaults to ``gen_random_uuid()``: a launch streams its
  tests into the result rows and the database builds each member's message from its row
  (``enqueue_run_members``), so the client neither makes nor sends a message id.
* ``test_runs_finished_idx``: run retention (``RHESIS_RUN_RETENTION_HOURS``) finds the
  runs finished before its cutoff.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Table -> storage parameters set by this migration (reset by the downgrade).
STORAGE = {
    "dramatiq.queue": {
        "fillfactor": 50,
        "autovacuum_vacuum_scale_factor": 0,
        "autovacuum_vacuum_threshold": 20000,
        "autovacuum_vacuum_insert_scale_factor": 0,
        "autovacuum_vacuum_insert_threshold": 50000,
        "autovacuum_analyze_scale_factor": 0,
        "autovacuum_analyze_threshold": 50000,
        "autovacuum_vacuum_cost_delay": 0,
    },
    "rhesis.claims": {
        "fillfactor": 70,
        "autovacuum_vacuum_scale_factor": 0,
        "autovacuum_vacuum_threshold": 10000,
        "autovacuum_vacuum_cost_delay": 0,
    },
    "rhesis.test_results": {
        "autovacuum_vacuum_scale_factor": 0.05,
        "autovacuum_vacuum_threshold": 20000,
        "autovacuum_vacuum_cost_delay": 0,
    },
    "rhesis.test_runs": {
        "fillfactor": 50,
        "autovacuum_vacuum_scale_factor": 0,
        "autovacuum_vacuum_threshold": 1000,
        "autovacuum_vacuum_cost_delay": 0,
    },
}


def upgrade() -> None:
    op.execute(
        "CREATE INDEX test_runs_finished_idx ON rhesis.test_runs (finished_at) "
        "WHERE finished_at IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX queue_claim ON dramatiq.queue (queue_name, mtime) WHERE state = 'queued'"
    )
    for table, parameters in STORAGE.items():
        values = ", ".join(f"{key} = {value}" for key, value in parameters.items())
        op.execute(f"ALTER TABLE {table} SET ({values})")
    op.execute(
        "ALTER TABLE rhesis.test_results ALTER COLUMN message_id SET DEFAULT gen_random_uuid()"
    )


def downgrade() -> None:
    op.execute("DROP INDEX rhesis.test_runs_finished_idx")
    op.execute("ALTER TABLE rhesis.test_results ALTER COLUMN message_id DROP DEFAULT")
    for table, parameters in STORAGE.items():
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(parameters)})")
    op.execute("DROP INDEX dramatiq.queue_claim")
