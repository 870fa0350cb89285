"""The span of one execution attempt of a test, ``test_attempt`` (with its wait for the
endpoint's budget, ``endpoint_budget``), and the lost attempt of a worker that died,
which the rescuer emits."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from rhesis_pipeline.identity import worker_id
from rhesis_pipeline.tracing.context import RunTrace
from rhesis_pipeline.tracing.setup import tracer
from rhesis_pipeline.tracing.spans import CurrentSpan, ns, run_context, span_context


class Attempt(CurrentSpan):
    """One execution attempt of a test; see :meth:`outcome`."""

    verdict: str | None = None

    def __init__(
        self,
        carrier: Mapping[str, Any] | None,
        run_id: str,
        test_id: str,
        *,
        attempt: int,
        executor: str,
        queued_ms: float | None = None,
    ) -> None:
        self.found = tracer()
        if self.found is None:
            return
        self.carrier, self.run_id = carrier, str(run_id)
        # The worker is the resource's service.instance.id: not repeated on every span.
        self.attributes: dict[str, Any] = {
            "rhesis.run.id": self.run_id,
            "rhesis.test.id": str(test_id),
            "rhesis.test.attempt": attempt,
            "rhesis.executor.type": executor,
        }
        if queued_ms is not None:
            self.attributes["rhesis.wait.queue_ms"] = round(max(0.0, queued_ms), 3)

    def __enter__(self) -> Attempt:
        if self.found is not None:
            context = run_context(self.run_id, self.carrier)
            self._enter(
                self.found.start_span("test_attempt", context=context, attributes=self.attributes)
            )
        return self

    def outcome(
        self,
        verdict: str,
        *,
        latency_ms: float | None = None,
        reason: str | None = None,
        metrics: Any = None,
    ) -> None:
        """What the attempt ended as: ``passed``, ``failed``, ``error``, ``cancelled``,
        ``retry`` (it is tried again), ``rate_limited`` (put back, not counted) or
        ``deferred`` (given back to its queue); *reason*: why it did not pass; *metrics*:
        the metrics' verdicts (those that failed are named, the first one's reason kept)."""
        span = self.span
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.verdict = verdict
        attributes: dict[str, Any] = {"rhesis.test.verdict": verdict}
        failed = [
            v for v in (metrics if isinstance(metrics, list) else ())
            if isinstance(v, Mapping) and v.get("passed") is False
        ]  # fmt: skip
        if failed:
            attributes["rhesis.test.failed_metrics"] = [str(v.get("name")) for v in failed]
            reason = reason or str(failed[0].get("reason") or "")
        if latency_ms is not None:
            attributes["rhesis.test.latency_ms"] = round(latency_ms, 3)
        if reason:
            key = "rhesis.retry.reason" if verdict in RETRIED else "rhesis.test.error"
            attributes[key] = reason[:1000]
        span.set_attributes(attributes)
        if verdict in RETRIED or verdict == "error":
            span.set_status(Status(StatusCode.ERROR, (reason or verdict)[:500]))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self.span is not None and self.verdict is None:
            # Ended by an exception no outcome named: the worker stopping (the test runs
            # again elsewhere), a time limit, a bug.
            stopped = type(exc).__name__ == "CancelledError"
            self.span.set_attribute("rhesis.test.verdict", "interrupted" if stopped else "error")
        super().__exit__(kind, exc, tb)

    def budget_waited(self, since_ns: int, key: str) -> None:
        """The attempt waited from *since_ns* (``time.time_ns()``) until now for the
        endpoint budget of limit *key*: ``rhesis.wait.endpoint_ms``, and a child span
        ``endpoint_budget`` when it waited a millisecond or more."""
        if self.span is None or self.found is None:
            return
        now = time.time_ns()
        self.span.set_attribute("rhesis.wait.endpoint_ms", round((now - since_ns) / 1e6, 3))
        if now - since_ns >= 1_000_000:
            span = self.found.start_span(
                "endpoint_budget", start_time=since_ns, attributes={"rhesis.limit.key": key}
            )
            span.end(end_time=now)


#: Verdicts of an attempt after which the test is tried again.
RETRIED = ("retry", "rate_limited", "deferred", "lost")


def lost_attempt(
    carrier: Mapping[str, Any] | None,
    run_id: str,
    test_id: str,
    *,
    attempt: int,
    started_at: datetime,
    worker: str | None,
    counted: bool,
) -> None:
    """The span of an attempt whose worker died while it ran (the rescuer knows it: the
    worker could not end it), from *started_at* to now, ``rhesis.test.verdict=lost``."""
    found = tracer()
    if found is None:
        return
    from opentelemetry.trace import Status, StatusCode

    parent = RunTrace.stored(run_id, carrier)
    span = found.start_span(
        "test_attempt",
        context=span_context(parent.root, parent.tracestate),
        start_time=ns(started_at),
        attributes={
            "rhesis.run.id": str(run_id),
            "rhesis.test.id": str(test_id),
            "rhesis.test.attempt": attempt,
            "rhesis.test.verdict": "lost",
            "rhesis.attempt.counted": counted,
            "rhesis.worker.id": worker or "",
            "rhesis.rescued_by": worker_id(),
        },
    )
    span.set_status(Status(StatusCode.ERROR, "the worker running this attempt died"))
    span.end(end_time=time.time_ns())
