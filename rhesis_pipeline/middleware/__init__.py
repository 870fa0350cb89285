"""dramatiq middleware of rhesis-pipeline, one per file.

Their order is decided in one place only: :func:`rhesis_pipeline.broker.middleware_list`.
"""

from .log_context import LogContext
from .outcomes import MemberOutcomes
from .pool_sizing import PoolSizing
from .registry import WorkerRegistry
from .retries import RhesisRetries
from .schema_check import SchemaCheck
from .tenant import TenantContext

__all__ = [
    "LogContext",
    "MemberOutcomes",
    "PoolSizing",
    "RhesisRetries",
    "SchemaCheck",
    "TenantContext",
    "WorkerRegistry",
]
