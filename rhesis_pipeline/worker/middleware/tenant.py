"""Carries the tenant (organization_id, user_id) from producer to actor."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Middleware
from dramatiq.broker import Broker, MessageProxy
from dramatiq.message import Message

from rhesis_pipeline.storage import tenant_context as tenant

_tokens = threading.local()


class TenantContext(Middleware):
    """``before_enqueue``: store the current tenant in ``message.options["tenant"]``
    unless the message already has one (a retry keeps its own).
    ``before_process_message``: make it the current tenant of the worker thread;
    ``after_process_message``/``after_skip_message``: restore the previous one."""

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        if "tenant" not in message.options:
            current = tenant.current_tenant()
            if current is not None:
                message.options["tenant"] = current.as_option()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        _tokens.token = tenant._set(tenant.Tenant.from_option(message.options.get("tenant")))

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._restore()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._restore()

    @staticmethod
    def _restore() -> None:
        token = getattr(_tokens, "token", None)
        if token is not None:
            _tokens.token = None
            tenant._reset(token)
