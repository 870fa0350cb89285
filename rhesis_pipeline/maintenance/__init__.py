"""Maintenance services: small jobs with a ``run_once()`` that a test can call.

One service per module, named after it: :mod:`~rhesis_pipeline.maintenance.rescue`
(:class:`~rhesis_pipeline.maintenance.rescue.Rescuer`),
:mod:`~rhesis_pipeline.maintenance.expire`
(:class:`~rhesis_pipeline.maintenance.expire.ExpireOverdueRuns`),
:mod:`~rhesis_pipeline.maintenance.retention` (:class:`Retention`), and
:mod:`~rhesis_pipeline.maintenance.sweeper`
(:class:`~rhesis_pipeline.maintenance.sweeper.Sweeper`, which runs the other three); their
shared base is :mod:`~rhesis_pipeline.maintenance.service`.

Each service takes a config with validated defaults, works in ``LIMIT`` batches until a
short batch (so a huge backlog never holds a long lock), runs one at a time per database
(a transaction-level advisory lock), and is safe to run twice.
"""

from rhesis_pipeline.maintenance.retention import Retention, RetentionConfig, RetentionResult

__all__ = ["Retention", "RetentionConfig", "RetentionResult"]
