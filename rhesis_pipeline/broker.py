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
from .errors import DatabaseUnavailable, MessageTooLarge
from .middleware import LogContext, PoolSizing
from .queries import Q

logger = logging.getLogger(__name__)

#: Scheduled messages older than this many seconds when a worker gets them are
#: skipped (a scheduler that was down must not replay a backlog of sweeps).
PERIODIQ_SKIP_DELAY_S = 60


def middleware_list() -> list[dramatiq.Middleware]:
    """The middleware of every rhesis-pipeline broker, in order.

    ``before_*`` hooks run in this order, ``after_*`` hooks in reverse. Therefore:

    1. LogContext first: its before hook sets the message id/actor for every later
       hook's log lines, and its after hook, running last, clears them.
    2. PoolSizing: sizes the database pool in ``before_worker_boot``, before any
       consumer borrows a connection.
    3. dramatiq's AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines and
       Retries, in dramatiq's default order. A middleware that must see Retries'
       verdict (``message.failed``) in an after hook has to come *before* Retries.
    4. CurrentMessage: lets actor code read its message (options, id).
    5. PeriodiqMiddleware: drops scheduled messages older than PERIODIQ_SKIP_DELAY_S.

    dramatiq's Prometheus middleware is left out: it binds a fixed HTTP port per host.
    """
    return [
        LogContext(),
        PoolSizing(),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY_S),
    ]


class RhesisBroker(PostgresBroker):
    """PostgresBroker with the fixes listed in the module docstring."""

    def __init__(self, *, middleware: list[dramatiq.Middleware] | None = None) -> None:
        super().__init__(
            pool=db.BrokerPool(),
            results=False,
            middleware=middleware_list() if middleware is None else middleware,
        )

    def enqueue(self, message, *, delay=None):
        if message.actor_name not in self.actors:
            raise ActorNotFound(
                f"cannot enqueue message for unknown actor {message.actor_name!r}; "
                f"declared actors: {', '.join(sorted(self.actors)) or 'none'}"
            )
        if delay:
            message = message.copy(queue_name=dq_name(message.queue_name))
            message.options["eta"] = current_millis() + delay

        # The fix: middleware first, so options it adds are part of what is stored.
        self.emit_before("enqueue", message, delay)
        encoded = message.encode()
        limit = db.settings().max_message_bytes
        if len(encoded) > limit:
            raise MessageTooLarge(
                f"message for actor {message.actor_name!r} is {len(encoded)} bytes encoded, "
                f"over RHESIS_MAX_MESSAGE_BYTES={limit}; store large data in a table and "
                "pass its id"
            )
        self._store(message.queue_name, str(message.message_id), encoded.decode("utf-8"))
        logger.debug("enqueued %s on %s", message.message_id, message.queue_name)
        self.emit_after("enqueue", message, delay)
        return message

    @retry(
        retry=retry_if_exception_type(DatabaseUnavailable),
        stop=stop_after_delay(10),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _store(self, queue_name: str, message_id: str, payload: str) -> None:
        with db.begin() as conn:
            conn.execute(
                Q["enqueue"],
                {"queue_name": queue_name, "message_id": message_id, "message": payload},
            )

    def close(self) -> None:
        """Close the pool and release the embedded server (a worker process's last act)."""
        super().close()
        db.dispose()
        from . import embedded

        embedded.release()


def build_broker() -> RhesisBroker:
    """A new broker with the standard middleware. Does not connect."""
    return RhesisBroker()
