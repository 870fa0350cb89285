"""A member handed to the worker's event loop (:mod:`rhesis_pipeline.worker.inflight`):
what it runs, how often it may be tried, where its outcome goes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.tracing.attempts import Attempt


@dataclass
class Job:
    """One member handed to the event loop."""

    run_id: str
    test_id: str
    executor: Mapping[str, Any]
    test: Mapping[str, Any]
    #: Attempts already made (the message's ``retries``); this one is the next.
    attempts_before: int
    max_retries: int
    time_limit_s: float
    min_backoff_ms: float
    max_backoff_ms: float
    #: Stores a terminal outcome (the fast path's store: non-blocking, thread-safe).
    store: Callable[..., None]
    started_at: Any = None
    #: Gives the member back to its queue for *delay_s* seconds, uncounted (True if it
    #: went back): blocking, run in a thread. None: it is never deferred.
    defer: Callable[[float], bool] | None = None
    #: Times it was deferred before (options.rhesis_deferrals).
    deferrals: int = 0
    #: The message's options that carry the run's trace context (traceparent).
    trace: Mapping[str, Any] | None = None
    #: Milliseconds it waited in its queue (since it was enqueued or due).
    queued_ms: float | None = None

    def span(self, attempt: int) -> Attempt:
        """The span of attempt number *attempt* (see rhesis_pipeline.tracing)."""
        return Attempt(
            self.trace,
            self.run_id,
            self.test_id,
            attempt=attempt,
            executor=str(self.executor.get("type", "python")),
            queued_ms=self.queued_ms if attempt == self.attempts_before + 1 else None,
        )

    def log_context(self) -> dict[str, str]:
        """The log fields a worker thread takes from its current message (the loop has
        none): run and test ids."""
        return {"run_id": str(self.run_id), "test_id": str(self.test_id)}
