"""Running totals for Prometheus counters; re-runs record the run they came from.

* ``rhesis.metric_totals (metric, labels, value)``: what the ``/metrics`` counters and
  histograms add up that the tables no longer hold or never held row by row — the tests
  and runs of runs deleted by retention (so ``rhesis_tests_finished_total`` never goes
  down), and the histograms of test durations and callback latency, observed when a run
  finishes (``observe_finished_run``).
* ``rhesis.test_runs.rerun_of``: the run a re-run was made from (``rhesis_pipeline.runs.rerun``).
* ``test_runs_name_idx``: the dashboard's runs page filtered by the start of a name.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rhesis.metric_totals (
            metric text NOT NULL,
            labels text NOT NULL DEFAULT '',
            value double precision NOT NULL DEFAULT 0,
            PRIMARY KEY (metric, labels)
        )
        """
    )
    op.execute("ALTER TABLE rhesis.test_runs ADD COLUMN rerun_of uuid")
    op.execute("CREATE INDEX test_runs_name_idx ON rhesis.test_runs (lower(name) text_pattern_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX rhesis.test_runs_name_idx")
    op.execute("ALTER TABLE rhesis.test_runs DROP COLUMN rerun_of")
    op.execute("DROP TABLE rhesis.metric_totals")
