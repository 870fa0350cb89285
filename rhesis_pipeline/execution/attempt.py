"""What one attempt of a test ends as, whichever executor ran it.

An attempt either returns an :class:`Execution` (the test ran: its status is "passed" or
"failed", never None) or raises an :class:`ExecutionError` whose class says what happens
next:

* :class:`RetryableExecutionError` (a connection error, a timeout, a 5xx, a python
  target that raised: :class:`TargetRaised`): retried with the run's backoff;
* :class:`RateLimited` (a 429, or a 503 with ``Retry-After``): put back without counting
  an attempt, its endpoint paused for ``retry_after_s`` seconds;
* :class:`PermanentExecutionError` (another 4xx, a target the worker cannot import, a
  ``passed`` that is not a boolean): not retried, the test ends as ``error``.

:class:`InvalidExecutor` is not an attempt's end: it refuses an executor spec when a run
is submitted, before anything is stored.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from dramatiq.errors import Retry

from rhesis_pipeline.errors import InvalidSubmission


class InvalidExecutor(InvalidSubmission):
    """The executor spec is malformed or its target cannot be imported."""


class ExecutionError(Exception):
    """An attempt failed; ``str()`` is the one-line reason stored on the result."""


class RetryableExecutionError(ExecutionError, Retry):
    """The attempt failed for a reason that may pass (connection, 5xx, 429): retried.

    A dramatiq ``Retry``: retried (and counted) like any exception, but the worker does not
    log it with a traceback — an expected failure is one warning line (see
    :mod:`rhesis_pipeline.worker.tasks`).
    """

    #: The run's backoff applies (dramatiq's Retry may carry a delay of its own).
    delay = None

    def __init__(self, message: str) -> None:
        # What dramatiq's Retry.__init__ does (it is untyped), keeping the class's delay.
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


class RateLimited(RetryableExecutionError):
    """The endpoint answered 429 (or 503 with ``Retry-After``): the attempt is put back,
    not counted; ``retry_after_s`` is how long, in seconds, the endpoint asked everyone
    to wait."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentExecutionError(ExecutionError):
    """The attempt failed for a reason a retry will not change (4xx, a python target
    that the worker cannot import): not retried."""


class TargetRaised(RetryableExecutionError):
    """A python target raised: retried like any failed attempt. ``str()`` is
    ``"Type: text"`` (the stored error); ``where`` is the line of the target that
    raised, for the log. The traceback is logged at DEBUG only (``dramatiq -v``): an
    expected failure of a test is one line, not a traceback."""

    def __init__(self, exc: Exception) -> None:
        text = str(exc).strip()
        super().__init__(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        frames = traceback.extract_tb(exc.__traceback__)
        last = frames[-1] if frames else None
        self.where = f"{last.filename}:{last.lineno} in {last.name}" if last else None


@dataclass
class Execution:
    """A test that ran: what the executor saw, before the test's metrics judge it."""

    #: "passed" or "failed" (never None).
    status: str
    #: The answer: the value at ``response_path`` (HTTP), or the target's output (python).
    output: Any = None
    #: Verdicts a python target returned itself (its ``metrics``), if any.
    metrics: Any = None
    #: How long the request or the call took, in milliseconds.
    duration_ms: float = 0.0
    #: The parsed JSON response (HTTP) or the returned value (python), for metrics.
    document: Any = None
    #: Why it failed, when no metric says so ("the target returned None").
    reason: str | None = None
    #: The HTTP status code of the answer (HTTP executor); None for a python target.
    http_status: int | None = None
