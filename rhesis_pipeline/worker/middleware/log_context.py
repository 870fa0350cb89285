"""Puts the message id and actor name on every log line written while a message runs."""

from __future__ import annotations

import logging
from typing import Any

from dramatiq import Middleware
from dramatiq.broker import Broker, MessageProxy

from rhesis_pipeline import logs
from rhesis_pipeline.runs.messages import CALLBACK, MEMBER
from rhesis_pipeline.storage import engine

logger = logging.getLogger(__name__)

#: Actors whose first argument is a run id (and a member's second, its test id).
RUN_ACTORS = (MEMBER.name, CALLBACK.name)


class LogContext(Middleware):
    """Sets the log context before any other middleware sees a message, clears it after.

    It must be first in the middleware list: ``before_*`` hooks run in list order and
    ``after_*`` hooks in reverse, so every other hook's lines carry the context.
    """

    def after_process_boot(self, broker: Broker) -> None:
        settings = engine.settings()
        logs.configure_worker_logging(settings.log_level, settings.log_format)
        logger.info("worker process booted; database %s", engine.describe_database())

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        args = message.args
        run_id = test_id = None
        if message.actor_name in RUN_ACTORS and args:
            run_id = str(args[0])
            test_id = str(args[1]) if len(args) > 1 else None
        tenant = message.options.get("tenant")
        organization = tenant.get("organization_id") if isinstance(tenant, dict) else None
        logs.set_message_context(
            message.message_id,
            message.actor_name,
            run_id=run_id,
            test_id=test_id,
            organization=organization,
        )

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        logs.clear_message_context()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        logs.clear_message_context()
