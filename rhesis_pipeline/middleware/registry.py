"""Registers the worker process (liveness lock, heartbeat) before its consumers start."""

from __future__ import annotations

from dramatiq import Middleware
from dramatiq.common import q_name

from ..registry import Registration


class WorkerRegistry(Middleware):
    def __init__(self) -> None:
        self.registration: Registration | None = None

    def before_worker_boot(self, broker, worker):
        declared = {q_name(q) for q in broker.get_declared_queues()}
        queues = (
            sorted(set(worker.consumer_whitelist) & declared)
            if worker.consumer_whitelist
            else sorted(declared)
        )
        self.registration = Registration(queues)
        self.registration.start()

    def after_worker_shutdown(self, broker, worker):
        if self.registration is not None:
            self.registration.stop()
            self.registration = None
