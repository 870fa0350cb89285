"""Puts the message id and actor name on every log line written while a message runs."""

from __future__ import annotations

import logging

from dramatiq import Middleware

from .. import db, logs

logger = logging.getLogger(__name__)


class LogContext(Middleware):
    """Sets the log context before any other middleware sees a message, clears it after.

    It must be first in the middleware list: ``before_*`` hooks run in list order and
    ``after_*`` hooks in reverse, so every other hook's lines carry the context.
    """

    def after_process_boot(self, broker):
        logs.configure_worker_logging(db.settings().log_level)
        logger.info("worker process booted; database %s", db.describe_database())

    def before_process_message(self, broker, message):
        logs.set_message_context(message.message_id, message.actor_name)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        logs.clear_message_context()

    def after_skip_message(self, broker, message):
        logs.clear_message_context()
