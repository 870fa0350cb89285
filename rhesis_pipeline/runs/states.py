"""The words for states that operators read: one vocabulary for the CLI's text, ``--json``
and the dashboard (the README's *States* lists them).

A **test** is ``queued`` (waiting in its queue), ``running`` (its message is claimed by a
worker: executing, or prefetched by a worker thread about to execute it), or has its
outcome: ``passed``, ``failed``, ``error`` (the target raised or timed out, retries
spent), ``cancelled`` (its run was revoked) or ``lost`` (declared lost by the sweeper).
The database stores ``queued`` until the outcome; ``running`` is read from the message.

A **worker** is ``live`` (heartbeat fresh, liveness lock held), ``reconnecting`` (live,
but its lock is lost with its connection; counted live for up to RHESIS_LOCK_GRACE_S),
``stopped`` (it stopped cleanly) or ``dead`` (it died without stopping: heartbeat or
lock gone).
"""

from __future__ import annotations

from datetime import datetime

QUEUED, RUNNING = "queued", "running"
PASSED, FAILED, ERROR, CANCELLED, LOST = "passed", "failed", "error", "cancelled", "lost"
#: Every state of a test, in the order of its life.
TEST_STATES = (QUEUED, RUNNING, PASSED, FAILED, ERROR, CANCELLED, LOST)

LIVE, RECONNECTING, STOPPED, DEAD = "live", "reconnecting", "stopped", "dead"
#: Every state of a worker.
WORKER_STATES = (LIVE, RECONNECTING, STOPPED, DEAD)


def test_state(status: str, message_state: str | None) -> str:
    """A test's state from its stored status and its message's queue state (None: the
    message is gone): an unfinished test whose message is consumed is ``running``."""
    if status == QUEUED and message_state == "consumed":
        return RUNNING
    return status


def worker_state(*, alive: bool, lock_held: bool, stopped_at: datetime | None) -> str:
    """A worker's state from the registry's verdicts (see monitor.workers)."""
    if alive:
        return LIVE if lock_held else RECONNECTING
    return STOPPED if stopped_at is not None else DEAD
