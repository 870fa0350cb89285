"""A lost database connection is an event, not a state.

Every long-lived loop that talks to the database (a worker's heartbeat, its consumers,
the outcome writer, the maintenance services, the scheduler's enqueues, rate-limit
waiters) keeps one :class:`Outage`: when a round fails because the database cannot be
reached, the loop calls :meth:`Outage.failed` and waits the delay it returns before it
tries again (connecting anew, and re-taking what the connection held: the liveness
lock, LISTEN); when a round succeeds it calls :meth:`Outage.ok`. The outage logs one line
when the loop loses the database and one when it has it again, with how long it lasted
— not a traceback every second.

The delay grows exponentially from ``initial_s`` to ``max_s`` with "full jitter"
(uniform between half the step and the step), so that a hundred workers that lost the
database together do not reconnect in lockstep.
"""

from __future__ import annotations

import logging
import random
import threading
import time

logger = logging.getLogger(__name__)


class Outage:
    """Tracks one loop's connection losses; see the module docstring.

    what: names the loop in the log lines ("worker 1f3c… heartbeat").
    initial_s: first delay after a failure, in seconds.
    max_s: the longest delay between two tries, in seconds.
    """

    def __init__(self, what: str, *, initial_s: float = 0.2, max_s: float = 5.0) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("Outage needs 0 < initial_s <= max_s")
        self.what = what
        self.initial_s = initial_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Record a failed round; returns the seconds to wait before the next try."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
            step = min(self.max_s, self.initial_s * 2 ** min(self._failures - 1, 30))
        if first:
            logger.warning("%s lost the database: %s; reconnecting", self.what, _one_line(exc))
        return random.uniform(step / 2, step)

    def ok(self) -> None:
        """Record a successful round (logs once if it ends an outage)."""
        with self._lock:
            since, self._since = self._since, None
            failures, self._failures = self._failures, 0
        if since is not None:
            logger.warning(
                "%s has the database again after %.1fs (%d failed tries)",
                self.what,
                time.monotonic() - since,
                failures,
            )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
