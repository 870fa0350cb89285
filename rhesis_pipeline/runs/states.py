"""The words for states: one vocabulary for the database, the CLI's text, ``--json`` and
the dashboard (docs/concepts.md lists them), as string enums.

A **run** is ``QUEUED`` (submitted, no member started), ``IN_PROGRESS`` (a member
started), then final: ``COMPLETED`` (every test executed: passed or failed), ``PARTIAL``
(some did not execute: errored, lost or cancelled), ``FAILED`` (none executed) or
``CANCELLED`` (revoked). The completion callback decides the final status
(:func:`rhesis_pipeline.runs.complete.decide_status`).

A **test** is ``queued`` (waiting in its queue), ``running`` (its message is claimed by a
worker: executing, or prefetched by a worker thread about to execute it), or has its
outcome: ``passed``, ``failed``, ``error`` (the target raised or timed out, retries
spent), ``cancelled`` (its run was revoked) or ``lost`` (declared lost by the sweeper).
The database stores ``queued`` until the outcome; ``running`` is read from the message.

A **worker** is ``live`` (heartbeat fresh, liveness lock held), ``reconnecting`` (live,
but its lock is lost with its connection; counted live for up to RHESIS_LOCK_GRACE_S),
``stopped`` (it stopped cleanly) or ``dead`` (it died without stopping: heartbeat or
lock gone).

The enums mix in ``str`` (``enum.StrEnum`` needs Python 3.11; 3.10 is supported) and
``str()``/``format()`` give the bare value, so a status compares equal to, prints as and
is JSON-encoded as the very string the database stores (``RunStatus.COMPLETED ==
"COMPLETED"``). Pass ``.value`` to SQL.
"""

from __future__ import annotations

import enum
from datetime import datetime


class _Word(str, enum.Enum):
    """A state's word: a ``str`` whose ``str()`` and ``format()`` are its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class RunStatus(_Word):
    """A run's status, as ``rhesis.test_runs.status`` stores it (upper case)."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        """The callback has finished the run: nothing changes it any more."""
        return self in FINAL_RUN_STATUSES


class TestStatus(_Word):
    """A test's state, as ``rhesis.test_results.status`` stores it (lower case), plus
    ``running``, which is read from its message (see :func:`test_state`)."""

    __test__ = False  # not a pytest test class, whatever its name says

    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        """The test's outcome is stored: it is counted once and never changes."""
        return self in TERMINAL_TEST_STATUSES


class WorkerState(_Word):
    """A worker's state (see :func:`worker_state`)."""

    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    DEAD = "dead"


#: Final run statuses, in the order the CLI and the dashboard list them.
FINAL_RUN_STATUSES = (
    RunStatus.COMPLETED,
    RunStatus.PARTIAL,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)
#: A run that is neither: waiting for its callback.
UNFINISHED_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.IN_PROGRESS)
#: A test's terminal outcomes: each stored once and counted once by the run's counters.
TERMINAL_TEST_STATUSES = (
    TestStatus.PASSED,
    TestStatus.FAILED,
    TestStatus.ERROR,
    TestStatus.LOST,
    TestStatus.CANCELLED,
)


def test_state(status: str, message_state: str | None) -> TestStatus:
    """A test's state from its stored status and its message's queue state (None: the
    message is gone): an unfinished test whose message is consumed is ``running``."""
    if status == TestStatus.QUEUED and message_state == "consumed":
        return TestStatus.RUNNING
    return TestStatus(status)


def worker_state(*, alive: bool, lock_held: bool, stopped_at: datetime | None) -> WorkerState:
    """A worker's state from the registry's verdicts (see monitor.workers)."""
    if alive:
        return WorkerState.LIVE if lock_held else WorkerState.RECONNECTING
    return WorkerState.STOPPED if stopped_at is not None else WorkerState.DEAD
