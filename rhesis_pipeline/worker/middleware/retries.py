"""dramatiq's Retries, except for failures caused by the database being unreachable.

A member whose processing failed because *our* database layer could not reach Postgres
(``DatabaseUnavailable``: loading its test, or storing a retry) did not fail: the test
may not even have started. Counting that as an attempt would turn a database restart
into ``error`` outcomes for tests with ``max_retries: 0``; acking it would lose the test.
So such a message is marked for release (:data:`rhesis_pipeline.worker.consumer.RELEASE`): the
consumer returns it to its queue, in its place, without counting an attempt, as soon as
the database answers again. Only DatabaseUnavailable counts, not a driver error raised by
a test's own code (that is the test failing).
"""

from __future__ import annotations

import logging

from dramatiq.middleware import Retries

from rhesis_pipeline.errors import DatabaseUnavailable
from rhesis_pipeline.worker.consumer import RELEASE

logger = logging.getLogger(__name__)


class RhesisRetries(Retries):
    def after_process_message(self, broker, message, *, result=None, exception=None):
        if isinstance(exception, DatabaseUnavailable):
            setattr(message, RELEASE, True)
            return
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except DatabaseUnavailable as exc:
            # The retry could not be stored: run the message again rather than ack it.
            logger.warning(
                "the retry of message %s could not be stored (%s); it goes back to its queue",
                message.message_id,
                exc,
            )
            setattr(message, RELEASE, True)
