"""dramatiq middleware of rhesis-pipeline, one per file.

Their order is decided in one place only: :func:`rhesis_pipeline.worker.broker.middleware_list`.
"""

from rhesis_pipeline.worker.middleware.log_context import LogContext
from rhesis_pipeline.worker.middleware.outcomes import MemberOutcomes
from rhesis_pipeline.worker.middleware.pool_sizing import PoolSizing
from rhesis_pipeline.worker.middleware.registry import WorkerRegistry
from rhesis_pipeline.worker.middleware.retries import RhesisRetries
from rhesis_pipeline.worker.middleware.schema_check import SchemaCheck
from rhesis_pipeline.worker.middleware.tenant import TenantContext
from rhesis_pipeline.worker.middleware.tracing import Tracing

__all__ = [
    "LogContext",
    "MemberOutcomes",
    "PoolSizing",
    "RhesisRetries",
    "SchemaCheck",
    "TenantContext",
    "Tracing",
    "WorkerRegistry",
]
