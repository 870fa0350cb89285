"""dramatiq's Retries, except for failures caused by the database being unreachable.

A member whose processing failed because *our* database layer could not reach Postgres
(``DatabaseUnavailable``: loading its test, or storing a retry) did not fail: the test
may not even have started. Counting that as an attempt would turn a database restart
into ``error`` outcomes for tests with ``max_retries: 0``; acking it would lose the test.
So such a message is marked for release (``Delivery.release``, see
:mod:`rhesis_pipeline.worker.delivery`): the consumer returns it to its queue, in its
place, without counting an attempt, as soon as the database answers again. Only
DatabaseUnavailable counts, not a driver error raised by a test's own code (that is the
test failing).
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import Retries

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.worker.delivery import deliveries

logger = logging.getLogger(__name__)


class RhesisRetries(Retries):
    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if isinstance(exception, DatabaseUnavailable):
            _release(message)
            return
        try:
            Retries.after_process_message(self, broker, message, result=result, exception=exception)
        except DatabaseUnavailable as exc:
            # The retry could not be stored: run the message again rather than ack it.
            logger.warning(
                "the retry of message %s could not be stored (%s); it goes back to its queue",
                message.message_id,
                exc,
            )
            _release(message)


def _release(message: MessageProxy) -> None:
    """Mark *message* to go back to its queue instead of being acked or nacked."""
    delivery = deliveries.of(message)
    if delivery is not None:  # else not claimed here: nothing holds it
        delivery.release = True
