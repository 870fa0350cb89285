"""A worker process's stop (SIGTERM, as a rolling update or a node drain sends it):
stop claiming at once, finish what it executes, give back what it has not started,
deregister, exit — all within the grace the platform allows before SIGKILL.

The sequence, and how long each step may take (the grace is their sum, :func:`grace_s`):

1. **SIGTERM**: :func:`install_signal_handlers` put a handler in front of dramatiq's, so
   :func:`stop_claiming` runs the moment the signal arrives. From then on every consumer
   claims nothing more and hands out nothing more: what it claimed and has not handed
   out goes back to its queue at once (uncounted), and a member that a worker thread
   picks up now is released unstarted (back to its queue, uncounted). dramatiq's worker
   process notices its own stop flag only within ``SIGNAL_POLL_S``.
2. dramatiq's ``Worker.stop``: each worker thread finishes the message it executes —
   one attempt, so at most the longest **time limit** (a thread test's retries go
   through the delay queue, they do not hold the thread) — then the consumers stop
   (within one consumer round, ``CONSUMER_ROUND_S``) and close, returning to the queue
   what they still hold unstarted.
3. ``MemberOutcomes.after_worker_shutdown``: the tests on the event loop
   (:mod:`.inflight`) get ``INFLIGHT_DRAIN_S`` more to finish; the rest are cancelled
   (within ``INFLIGHT_CANCEL_S``), stay claimed by the stopped worker and are returned by
   the rescuer, uncounted — they run again elsewhere. Then outcomes handed to the
   outcome writer are stored (``DRAIN_TIMEOUT_S``: only a slow or unreachable database
   makes this wait; what is not stored by then runs again).
4. ``WorkerRegistry.after_worker_shutdown``: the row is marked stopped and the liveness
   lock released (``STOP_OVERHEAD_S`` covers this, the requeues and the exit).
5. ``Tracing.after_worker_shutdown`` (when the process traces): the spans it still holds
   are exported. Not part of the grace: everything that matters is stored by then, and
   only a collector that does not answer makes it wait (up to the exporter's timeout); a
   SIGKILL during it costs spans, nothing else.

A platform's grace shorter than :func:`grace_s` of the longest time limit it allows
loses nothing either — a SIGKILLed worker's claims are rescued — but a test cut short
runs again (and, on the careful path, a death while running counts as an attempt).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds until dramatiq's worker process notices its stop flag (it sleeps 1 s a round).
SIGNAL_POLL_S = 1.0
#: Seconds a consumer thread takes to see it must stop: one round (dramatiq's
#: ``--worker-timeout``, 1,000 ms by default).
CONSUMER_ROUND_S = 1.0
#: Seconds a stopping worker waits for the tests in flight on its event loop
#: (:mod:`rhesis_pipeline.worker.inflight`) before it cancels them (they run again
#: elsewhere, uncounted).
INFLIGHT_DRAIN_S = 15.0
#: Seconds it then waits for the cancelled tests to unwind.
INFLIGHT_CANCEL_S = 5.0
#: Seconds a stopping worker waits for outcomes handed to its outcome writer (only a
#: slow or unreachable database makes it wait at all).
DRAIN_TIMEOUT_S = 30.0
#: Seconds for the rest: requeues, endpoint slots, deregistration, the process's exit
#: (about 1 s measured on a 2-core machine).
STOP_OVERHEAD_S = 5.0

_stopping = threading.Event()
#: The handlers install_signal_handlers put in front (so that it never chains twice).
_installed: list[Any] = []


def grace_s(max_time_limit_s: float) -> float:
    """Seconds a worker needs between SIGTERM and its exit, at worst, when no test may
    run longer than *max_time_limit_s* per attempt: the longest time limit plus the
    drain. A platform's grace (Kubernetes' ``terminationGracePeriodSeconds``) at least
    this long never cuts a test that could have finished (see the module docstring)."""
    return (
        SIGNAL_POLL_S
        + max_time_limit_s
        + CONSUMER_ROUND_S
        + INFLIGHT_DRAIN_S
        + INFLIGHT_CANCEL_S
        + DRAIN_TIMEOUT_S
        + STOP_OVERHEAD_S
    )


def stopping() -> bool:
    """Whether this process is stopping: its consumers claim and hand out nothing."""
    return _stopping.is_set()


def stop_claiming() -> None:
    """From now on this process claims nothing and starts no member (idempotent)."""
    if not _stopping.is_set():
        _stopping.set()
        logger.info("stopping: claiming nothing more; finishing what runs, returning the rest")


def reset() -> None:
    """A worker booting in this process claims again (an in-process worker, restarted)."""
    _stopping.clear()


def install_signal_handlers() -> None:
    """Run :func:`stop_claiming` first on SIGTERM and SIGHUP, then the handler that was
    there (dramatiq's, which stops the worker within ``SIGNAL_POLL_S``). Only the main
    thread may install handlers: elsewhere (an embedded worker) nothing changes, and
    ``before_worker_shutdown`` stops the claiming instead."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous in _installed:
            continue  # already in front
        signal.signal(signum, _chained(previous))


def _chained(previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop_claiming()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    _installed.append(handler)
    return handler
