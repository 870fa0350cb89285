"""rhesis-pipeline: run test suites in parallel on Dramatiq workers with a Postgres broker.

The Python API — what a web backend needs, every name typed::

    from rhesis_pipeline import launch_test_run, get_run, get_results, rerun, revoke_runs
    from rhesis_pipeline import tenant_session, tenant_context, on_run_finished
    from rhesis_pipeline import RunNotFound, InvalidSubmission   # and the other errors
    from rhesis_pipeline import check_health, find_stuck_runs    # operations
    from rhesis_pipeline import tracing_enabled                  # OpenTelemetry

(the rest of what ``rhesis-monitor`` calls is in :mod:`rhesis_pipeline.monitor`).

Importing this package does not connect to the database or install a broker, and none
of these functions needs the worker entry point (``rhesis_pipeline.actors``, which
installs the broker): a web backend launches runs and reads them without it.
"""

from __future__ import annotations

from rhesis_pipeline.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    EmbeddedServerError,
    InvalidSubmission,
    MessageTooLarge,
    NothingToRerun,
    NotMigrated,
    PermissionDenied,
    RhesisError,
    RunNotFound,
)
from rhesis_pipeline.monitor.health import HealthReport, check_health
from rhesis_pipeline.monitor.revoke import RevokeOutcome, revoke_runs
from rhesis_pipeline.monitor.stuck import find_stuck_runs
from rhesis_pipeline.runs.complete import on_run_finished
from rhesis_pipeline.runs.options import RunOptions
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.rerun import rerun
from rhesis_pipeline.runs.states import RunStatus, TestStatus
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage.tenancy import act_as_tenant, tenant_session
from rhesis_pipeline.storage.tenant_context import tenant_context
from rhesis_pipeline.tracing.setup import tracing_enabled

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "EmbeddedServerError",
    "HealthReport",
    "InvalidSubmission",
    "MessageTooLarge",
    "NotMigrated",
    "NothingToRerun",
    "PermissionDenied",
    "RevokeOutcome",
    "RhesisError",
    "Run",
    "RunNotFound",
    "RunOptions",
    "RunStatus",
    "TestStatus",
    "__version__",
    "act_as_tenant",
    "check_health",
    "find_stuck_runs",
    "get_results",
    "get_run",
    "launch_test_run",
    "on_run_finished",
    "rerun",
    "revoke_runs",
    "tenant_context",
    "tenant_session",
    "tracing_enabled",
]
