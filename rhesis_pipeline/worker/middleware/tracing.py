"""Sets up a worker process's tracing when it boots and flushes its spans when it stops
(see :mod:`rhesis_pipeline.tracing`).

A worker process exits without running ``atexit`` hooks, where the OpenTelemetry SDK
flushes: spans still in the batch processor would be lost. First in the middleware
list, so that its ``after_worker_shutdown`` runs last: after the event loop's tests were
drained and the outcome writer flushed (their spans end there).
"""

from __future__ import annotations

import logging

from dramatiq import Middleware
from dramatiq.broker import Broker
from dramatiq.worker import Worker

from rhesis_pipeline.tracing import setup

logger = logging.getLogger(__name__)


class Tracing(Middleware):
    """Tracer set up at boot (if the OTEL_* variables say so), spans flushed at stop."""

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if setup.tracing_enabled():
            logger.info("tracing: spans of this process go out by OpenTelemetry")

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        try:
            setup.shutdown()
        except Exception as exc:  # an unreachable collector must not fail the stop
            logger.warning("tracing: could not flush the last spans: %s", exc)
