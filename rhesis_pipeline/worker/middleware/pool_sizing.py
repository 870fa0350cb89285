"""Sizes the process's database pool from the worker's threads and queues.

dramatiq-pg's default pool of 16 connections was exhausted by ten queues in one process.
Here each consumer (one per queue, plus one per delay queue) keeps one connection for its
lifetime (LISTEN) and borrows one briefly to claim or ack; each worker thread borrows one
to store an outcome or enqueue a retry. The pool is sized before the worker starts its
consumers:

    size = consumers + threads + RESERVE

``RHESIS_DB_POOL_SIZE`` overrides the computation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dramatiq import Middleware
from dramatiq.broker import Broker
from dramatiq.common import q_name
from dramatiq.worker import Worker

from rhesis_pipeline.storage import engine

logger = logging.getLogger(__name__)

#: Connections beyond consumers and threads: the heartbeat's (held for the process's
#: lifetime), the outcome writer's, the rescuer's and the revocation checks' (borrowed for
#: a round), and two for consumers claiming or acking at the same moment.
RESERVE = 6


def worker_pool_size(*, consumers: int, threads: int) -> int:
    """Connections a worker process needs: one per consumer and per thread, a reserve."""
    return consumers + threads + RESERVE


def consumer_count(broker: Broker, queues: Iterable[str] | None) -> int:
    """Consumers a worker with *queues* (None: all) starts on *broker*."""
    declared = set(broker.get_declared_queues()) | set(broker.get_declared_delay_queues())
    if queues:
        wanted = set(queues)
        declared = {q for q in declared if q_name(q) in wanted}
    return len(declared)


class PoolSizing(Middleware):
    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        consumers = consumer_count(broker, worker.consumer_whitelist)
        size = worker_pool_size(consumers=consumers, threads=worker.worker_threads)
        engine.set_pool_size(size)
        logger.info(
            "database pool: %d connections (%d consumers, %d threads)%s",
            engine.pool_size(),
            consumers,
            worker.worker_threads,
            " [RHESIS_DB_POOL_SIZE]" if engine.settings().db_pool_size else "",
        )
