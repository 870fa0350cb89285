"""The broker: dramatiq-pg's PostgresBroker, fixed, with rhesis-pipeline's middleware.

This module is the only place that knows the order of the middleware
(:func:`middleware_list`). Building the broker does not connect: the pool behind it
(:class:`rhesis_pipeline.db.BrokerPool`) connects on first use.

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

import dramatiq
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    GroupCallbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq_pg import PostgresBroker
from periodiq import PeriodiqMiddleware
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from . import db
from .consumer import RhesisConsumer, channel
from .errors import DatabaseUnavailable, MessageTooLarge
from .middleware import LogContext, MemberOutcomes, PoolSizing, TenantContext, WorkerRegistry
from .queries import Q
from .rate_limits import PostgresRateLimiterBackend

logger = logging.getLogger(__name__)

#: Scheduled messages older than this many seconds when a worker gets them are
#: skipped (a scheduler that was down must not replay a backlog of sweeps).
PERIODIQ_SKIP_DELAY_S = 60


def middleware_list() -> list[dramatiq.Middleware]:
    """The middleware of every rhesis-pipeline broker, in order.

    ``before_*`` hooks run in this order, ``after_*`` hooks in reverse. Therefore:

    1. LogContext first: its before hook sets the message id/actor for every later
       hook's log lines, and its after hook, running last, clears them.
    2. TenantContext: restores the message's tenant before any other hook and keeps it
       until every other after-hook (MemberOutcomes writes with it) has run. Its
       ``before_enqueue`` adds the tenant to every message sent, retries included.
    3. PoolSizing: sizes the database pool in ``before_worker_boot``, before any
       consumer borrows a connection; then WorkerRegistry registers the process (its
       id goes on every claim its consumers make) and starts its heartbeat.
    4. dramatiq's AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, in
       dramatiq's default order.
    5. MemberOutcomes *before* Retries: after-hooks run in reverse, so it sees Retries'
       verdict (``message.failed``) and stores ``error`` only when retries are over.
    6. Retries.
    7. GroupCallbacks on the Postgres rate-limiter backend, for dramatiq's own
       ``group(...).add_completion_callback(...)``.
    8. CurrentMessage: lets actor code read its message (options, id).
    9. PeriodiqMiddleware: drops scheduled messages older than PERIODIQ_SKIP_DELAY_S.

    dramatiq's Prometheus middleware is left out: it binds a fixed HTTP port per host.
    """
    return [
        LogContext(),
        TenantContext(),
        PoolSizing(),
        WorkerRegistry(),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        MemberOutcomes(),
        Retries(),
        GroupCallbacks(PostgresRateLimiterBackend()),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY_S),
    ]


class RhesisBroker(PostgresBroker):
    """PostgresBroker with the fixes listed in the module docstring."""

    def __init__(self, *, middleware: list[dramatiq.Middleware] | None = None) -> None:
        super().__init__(
            pool=db.BROKER_POOL,
            results=False,
            middleware=middleware_list() if middleware is None else middleware,
        )

    def consume(self, queue_name, prefetch=1, timeout=30000):
        return RhesisConsumer(
            broker=self, queue_name=queue_name, prefetch=prefetch, timeout=timeout
        )

    def prepare(self, message, *, delay=None, hooks=None):
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
        if hooks is None:
            self.emit_before("enqueue", message, delay)
        else:
            for hook in hooks:
                hook(self, message, delay)
        encoded = message.encode()
        limit = db.settings().max_message_bytes
        if len(encoded) > limit:
            raise MessageTooLarge(
                f"message for actor {message.actor_name!r} is {len(encoded)} bytes encoded, "
                f"over RHESIS_MAX_MESSAGE_BYTES={limit}; store large data in a table and "
                "pass its id"
            )
        return message, encoded.decode("utf-8")

    def enqueue(self, message, *, delay=None, connection=None):
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
        else:
            self._store(params)
        logger.debug("enqueued %s on %s", message.message_id, message.queue_name)
        self.emit_after("enqueue", message, delay)
        return message

    def enqueue_many(self, messages, *, connection) -> int:
        """Store many messages for one queue with one COPY and one NOTIFY.

        Part of *connection*'s transaction, like ``enqueue(connection=…)``. Runs the
        enqueue hooks of every middleware that has them, per message, as ``enqueue``
        does (only those: with thousands of messages the no-op calls added up).
        Returns how many were stored.
        """
        messages = list(messages)
        if not messages:
            return 0
        queues = {m.queue_name for m in messages}
        if len(queues) != 1:
            raise ValueError(f"enqueue_many takes messages of one queue, got {sorted(queues)}")
        (queue_name,) = queues
        before = self._hooks("before_enqueue")
        payloads = [self.prepare(m, hooks=before)[1] for m in messages]
        db.copy_rows(
            connection,
            "dramatiq.queue",
            ("queue_name", "message_id", "state", "message"),
            (
                (queue_name, m.message_id, "queued", p)
                for m, p in zip(messages, payloads, strict=True)
            ),
        )
        connection.execute(
            Q["notify_queue"],
            {"channel": channel(queue_name), "payload": f'{{"batch": {len(payloads)}}}'},
        )
        after = self._hooks("after_enqueue")
        for m in messages:
            for hook in after:
                hook(self, m, None)
        return len(payloads)

    def _hooks(self, name: str) -> list:
        """Bound *name* hooks of the middleware that override dramatiq's no-op."""
        base = getattr(dramatiq.Middleware, name)
        return [
            getattr(m, name) for m in self.middleware if getattr(type(m), name, base) is not base
        ]

    @retry(
        retry=retry_if_exception_type(DatabaseUnavailable),
        stop=stop_after_delay(10),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _store(self, params: dict) -> None:
        with db.begin() as conn:
            conn.execute(Q["enqueue"], params)

    def close(self) -> None:
        """Close the pool and release the embedded server (a worker process's last act)."""
        super().close()
        db.dispose()
        from . import embedded

        embedded.release()


def build_broker() -> RhesisBroker:
    """A new broker with the standard middleware. Does not connect."""
    return RhesisBroker()
