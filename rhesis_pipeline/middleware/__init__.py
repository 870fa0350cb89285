"""dramatiq middleware of rhesis-pipeline, one per file.

Their order is decided in one place only: :func:`rhesis_pipeline.broker.middleware_list`.
"""

from .log_context import LogContext
from .pool_sizing import PoolSizing

__all__ = ["LogContext", "PoolSizing"]
