"""The broker: dramatiq-pg's PostgresBroker, fixed, with rhesis-pipeline's middleware.

This module is the only place that knows the order of the middleware
(:func:`middleware_list`). Building the broker does not connect: the pool behind it
(:class:`rhesis_pipeline.storage.db.BrokerPool`) connects on first use.

Fixes over dramatiq-pg 0.12
---------------------------
* ``PostgresBroker.enqueue`` encodes the message *before* ``emit_before("enqueue")``,
  so options a middleware adds in ``before_enqueue`` never reached the worker.
  :meth:`RhesisBroker.enqueue` runs the middleware first and encodes after.
* A message larger than ``RHESIS_MAX_MESSAGE_BYTES`` is refused with an error naming the
  actor, instead of being stored and NOTIFYed.
* A message for an actor this broker does not declare is refused at the producer, where
  the mistake is made, instead of failing in a worker.
* The pool is SQLAlchemy's, shared with the rest of the process and sized from the
  worker's threads and queues (dramatiq-pg's default of 16 ran out with ten queues).
* dramatiq-pg's result backend is not installed: it returns a failed actor's raw
  exception dict instead of raising and never enforces its TTL. Outcomes are stored in
  the pipeline's own tables.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ActorNotFound
from dramatiq.message import Message
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    GroupCallbacks,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq_pg import PostgresBroker
from periodiq import PeriodiqMiddleware
from sqlalchemy.engine import Connection
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.runs import messages
from rhesis_pipeline.storage import broker_pool, db, engine
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.worker.consumer import RhesisConsumer
from rhesis_pipeline.worker.middleware import (
    LogContext,
    MemberOutcomes,
    PoolSizing,
    RhesisRetries,
    SchemaCheck,
    TenantContext,
    Tracing,
    WorkerRegistry,
)
from rhesis_pipeline.worker.rate_limits import PostgresRateLimiterBackend

logger = logging.getLogger(__name__)

#: Scheduled messages older than this many seconds when a worker gets them are
#: skipped (a scheduler that was down must not replay a backlog of sweeps).
PERIODIQ_SKIP_DELAY_S = 60
#: The option periodiq sets on the messages its scheduler sends.
SCHEDULED_AT = "scheduled_at"


def middleware_list() -> list[dramatiq.Middleware]:
    """The middleware of every rhesis-pipeline broker, in order.

    ``before_*`` hooks run in this order, ``after_*`` hooks in reverse. Therefore:

    0. Tracing before all: it has no message hooks, and its ``after_worker_shutdown``
       (the flush of the process's spans) runs after every other one.
    1. LogContext first of the message hooks: its before hook sets the message id/actor
       for every later hook's log lines, and its after hook, running last of them,
       clears them.
    2. TenantContext: restores the message's tenant before any other hook and keeps it
       until every other after-hook (MemberOutcomes writes with it) has run. Its
       ``before_enqueue`` adds the tenant to every message sent, retries included.
    3. PoolSizing: sizes the database pool in ``before_worker_boot``, before any
       consumer borrows a connection; then SchemaCheck ends the process with one line if
       the database is not at this version's schema; then WorkerRegistry registers the
       process (its id goes on every claim its consumers make) and starts its heartbeat.
    4. dramatiq's AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, in
       dramatiq's default order.
    5. MemberOutcomes *before* Retries: after-hooks run in reverse, so it sees Retries'
       verdict (``message.failed``) and stores ``error`` only when retries are over.
    6. RhesisRetries: dramatiq's Retries, except that a failure caused by the database
       being unreachable releases the message (it runs again, no attempt counted).
    7. GroupCallbacks on the Postgres rate-limiter backend, for dramatiq's own
       ``group(...).add_completion_callback(...)``.
    8. CurrentMessage: lets actor code read its message (options, id).
    9. PeriodiqMiddleware: drops scheduled messages older than PERIODIQ_SKIP_DELAY_S.

    dramatiq's Prometheus middleware is left out: it binds a fixed HTTP port per host.
    """
    return [
        Tracing(),
        LogContext(),
        TenantContext(),
        PoolSizing(),
        SchemaCheck(),
        WorkerRegistry(),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        MemberOutcomes(),
        RhesisRetries(),  # type: ignore[no-untyped-call, unused-ignore]  # dramatiq's __init__
        GroupCallbacks(PostgresRateLimiterBackend()),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY_S),
    ]


class RhesisBroker(PostgresBroker):
    """PostgresBroker with the fixes listed in the module docstring."""

    def __init__(self, *, middleware: list[dramatiq.Middleware] | None = None) -> None:
        super().__init__(  # type: ignore[no-untyped-call, unused-ignore]  # dramatiq-pg's
            pool=broker_pool.BROKER_POOL,
            results=False,
            middleware=middleware_list() if middleware is None else middleware,
        )
        self._scheduler_outage = Outage("scheduler")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> RhesisConsumer:
        return RhesisConsumer(
            broker=self, queue_name=queue_name, prefetch=prefetch, timeout=timeout
        )

    def prepare(
        self, message: Message[Any], *, delay: int | None = None
    ) -> tuple[Message[Any], str]:
        """Run the ``before_enqueue`` middleware on *message* and encode it.

        Returns ``(message, payload)``; *message* is a copy on the delay queue when
        *delay* (ms) is given. Raises ActorNotFound or MessageTooLarge, naming the actor.
        """
        if message.actor_name not in self.actors:
            raise ActorNotFound(
                f"cannot enqueue message for unknown actor {message.actor_name!r}; "
                f"declared actors: {', '.join(sorted(self.actors)) or 'none'}"
            )
        if delay:
            message = message.copy(queue_name=dq_name(message.queue_name))
            message.options["eta"] = current_millis() + delay
        # The fix: middleware first, so options it adds are part of what is stored.
        self.emit_before("enqueue", message, delay)  # type: ignore[no-untyped-call, unused-ignore]
        return message, messages.encode(message)

    def enqueue(
        self,
        message: Message[Any],
        *,
        delay: int | None = None,
        connection: Connection | None = None,
    ) -> Message[Any]:
        """Store *message* as queued and wake its consumers.

        With *connection* (a SQLAlchemy Connection inside a transaction) the message is
        part of that transaction: it exists, and is delivered, only if it commits.
        """
        message, payload = self.prepare(message, delay=delay)
        params = {
            "queue_name": message.queue_name,
            "message_id": str(message.message_id),
            "message": payload,
        }
        if connection is not None:
            connection.execute(Q["enqueue"], params)
        elif SCHEDULED_AT in message.options:
            if not self._store_scheduled(message, params):
                return message
        else:
            self._store(params)
        logger.debug("enqueued %s on %s", message.message_id, message.queue_name)
        self.emit_after("enqueue", message, delay)  # type: ignore[no-untyped-call, unused-ignore]
        return message

    @retry(
        retry=retry_if_exception_type(DatabaseUnavailable),
        stop=stop_after_delay(10),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _store(self, params: dict[str, Any]) -> None:
        with db.begin() as conn:
            conn.execute(Q["enqueue"], params)

    def _store_scheduled(self, message: Message[Any], params: dict[str, Any]) -> bool:
        """Store a message sent by the periodiq scheduler. If the database stays
        unreachable, skip this tick instead of raising (which would end the ``periodiq``
        process): periodic actors are idempotent and the next tick sends again. Logs one
        line when the scheduler loses the database, one when it has it again."""
        try:
            self._store(params)
        except DatabaseUnavailable as exc:
            self._scheduler_outage.failed(exc)
            logger.warning(
                "scheduler: %s at %s not sent (database unreachable); the next tick sends it",
                message.actor_name,
                message.options.get(SCHEDULED_AT),
            )
            return False
        self._scheduler_outage.ok()
        return True

    def close(self) -> None:
        """Close the pool and release the embedded server (a worker process's last act)."""
        super().close()  # type: ignore[no-untyped-call, unused-ignore]  # dramatiq-pg's
        engine.dispose()
        engine.release_embedded()


def build_broker() -> RhesisBroker:
    """A new broker with the standard middleware. Does not connect."""
    return RhesisBroker()
