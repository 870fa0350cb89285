"""A run's W3C trace context (OpenTelemetry): ``test_runs.trace_context``.

Written when a run is launched by a process that traces: the root span's
``traceparent`` (and ``tracestate``), and the launching span as ``parent`` (child mode)
or ``link`` (link mode); read by the callback, which emits the run's root span (see
rhesis_pipeline.tracing). NULL for a run launched without tracing. Adding a nullable
column without a default rewrites nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rhesis.test_runs ADD COLUMN trace_context jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE rhesis.test_runs DROP COLUMN trace_context")
