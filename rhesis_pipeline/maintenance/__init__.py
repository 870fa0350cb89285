"""Maintenance services: small jobs with a ``run_once()`` that a test can call.

Each service takes a config with validated defaults, works in ``LIMIT`` batches until a
short batch (so a huge backlog never holds a long lock), runs one at a time per database
(a transaction-level advisory lock), and is safe to run twice.
"""

from rhesis_pipeline.maintenance.purge import Retention, RetentionConfig, RetentionResult

__all__ = ["Retention", "RetentionConfig", "RetentionResult"]
