"""Registers the worker process before its consumers start, and runs its maintenance.

``before_worker_boot``: the process's :class:`~rhesis_pipeline.worker.registry.Registration`
(row, liveness lock, heartbeat thread), then two maintenance services, each in a thread
of its own so that neither can delay the heartbeat:

* the rescuer (:mod:`rhesis_pipeline.maintenance.rescue`), every heartbeat interval, so a
  dead worker's messages are back in their queue within seconds, not at the next sweep;
* revocation checks (:func:`rhesis_pipeline.worker.cancellation.interrupt_revoked`), every
  heartbeat interval: members of a revoked run executing here are interrupted.

``before_worker_shutdown`` (and SIGTERM itself, through the handler installed at boot):
the process claims nothing more (:mod:`rhesis_pipeline.worker.shutdown`).
``after_worker_shutdown``: stops the services and deregisters.
"""

from __future__ import annotations

from dramatiq import Middleware
from dramatiq.broker import Broker
from dramatiq.common import q_name
from dramatiq.worker import Worker

from rhesis_pipeline.maintenance.rescue import Rescuer
from rhesis_pipeline.maintenance.service import ServiceThread
from rhesis_pipeline.storage import engine
from rhesis_pipeline.worker import cancellation, shutdown
from rhesis_pipeline.worker.registry import Registration


class WorkerRegistry(Middleware):
    def __init__(self) -> None:
        self.registration: Registration | None = None
        self.services: list[ServiceThread] = []

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        shutdown.reset()
        shutdown.install_signal_handlers()
        declared = {q_name(q) for q in broker.get_declared_queues()}
        queues = (
            sorted(set(worker.consumer_whitelist) & declared)
            if worker.consumer_whitelist
            else sorted(declared)
        )
        self.registration = Registration(queues)
        self.registration.start()
        interval = engine.settings().heartbeat_interval_s
        rescuer = Rescuer.from_settings()
        self.services = [
            ServiceThread("rescuer", rescuer.run_once, interval_s=interval).start(),
            ServiceThread(
                "revocation-checks", cancellation.interrupt_revoked, interval_s=interval
            ).start(),
        ]

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        shutdown.stop_claiming()  # already done if a signal stopped it

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        for service in self.services:
            service.stop()
        self.services = []
        if self.registration is not None:
            self.registration.stop()
            self.registration = None
        # Stopped: a worker started anew in this process (an embedded one) claims again.
        shutdown.reset()
