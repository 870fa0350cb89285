"""The skeleton every maintenance service shares.

A maintenance service (rescue, expiry, retention, and the sweep that runs them all) is a
:class:`Service`, one per module, with a validated config, an injectable ``clock``, and a
``run_once()`` that a test can call. This module gives them what they all need, written
once:

* :func:`run_batches` — the work in ``LIMIT`` batches, one transaction each, each under
  the service's transaction-level advisory lock (one runner at a time per database; a
  second runner finds the lock taken and skips), until a short batch, with a jittered
  pause between batches so a huge backlog never holds a long lock or starves the workers.
* :class:`ServiceThread` — runs a service's ``run_once()`` every ``interval_s`` (jittered
  by ±``jitter``) in a daemon thread of its own, so a slow round of one service never
  delays another (or a heartbeat). A round that fails because the database cannot be
  reached is an :class:`~rhesis_pipeline.storage.outage.Outage`: one log line when the database
  goes, one when it is back, a bounded backoff in between.
"""

from __future__ import annotations

import abc
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rhesis_pipeline.storage import db, driver_errors
from rhesis_pipeline.storage.outage import Outage
from rhesis_pipeline.storage.queries import Q

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the default ``clock`` of every service."""
    return datetime.now(timezone.utc)


class Service(abc.ABC):
    """A maintenance service: :meth:`run_once` does one round of its work and returns
    what it did (a result dataclass with counts and ``duration_s``, in seconds).

    Subclasses are dataclasses whose fields are a config (validated when built) and a
    ``clock`` (``() -> aware datetime``, :func:`utcnow` by default) that tests replace
    to move time without waiting.
    """

    @abc.abstractmethod
    def run_once(self, *, dry_run: bool = False) -> object:
        """One round. With *dry_run*, count what would change and change nothing."""


@dataclass
class BatchRun:
    """What :func:`run_batches` did: rows handled, batches, whether the lock was taken."""

    total: int = 0
    batches: int = 0
    skipped: bool = False  # another runner held the lock


def run_batches(
    work: Callable[[Connection], int],
    *,
    lock_key: int,
    batch_size: int,
    max_batches: int,
    dry_run: bool = False,
    pause_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchRun:
    """Call ``work(conn)`` once per batch, each in its own transaction under the advisory
    lock *lock_key*; *work* returns how many rows it handled. Stops after a batch of
    fewer than *batch_size* rows, after *max_batches*, or when another runner holds the
    lock. With *dry_run*, each transaction is rolled back and only one batch runs.
    """
    run = BatchRun()
    for _ in range(max_batches):
        with db.begin() as conn:
            if not conn.execute(Q["try_maintenance_lock"], {"key": lock_key}).scalar():
                run.skipped = True
                break
            handled = work(conn)
            if dry_run:
                conn.rollback()
        run.batches += 1
        run.total += handled
        if handled < batch_size or dry_run:
            break
        if pause_s:
            sleep(pause_s * random.uniform(0.5, 1.5))
    return run


class ServiceThread:
    """Runs ``run_once`` every *interval_s* seconds (± *jitter* of it) in a daemon thread.

    name: the thread's name and the log lines' subject ("rescuer").
    max_backoff_s: longest wait between tries while the database is unreachable
        (default: *interval_s*).
    """

    def __init__(
        self,
        name: str,
        run_once: Callable[[], object],
        *,
        interval_s: float,
        jitter: float = 0.2,
        max_backoff_s: float | None = None,
    ) -> None:
        if interval_s <= 0 or not 0 <= jitter < 1:
            raise ValueError("ServiceThread needs interval_s > 0 and 0 <= jitter < 1")
        self.name = name
        self.run_once = run_once
        self.interval_s = interval_s
        self.jitter = jitter
        self.rounds = 0  # completed rounds (tests, logs)
        self._outage = Outage(name, max_s=max_backoff_s or interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ServiceThread:
        self._thread = threading.Thread(target=self._loop, name=f"rhesis-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _delay(self) -> float:
        return self.interval_s * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _loop(self) -> None:
        delay = self._delay()
        while not self._stop.wait(delay):
            try:
                self.run_once()
            except Exception as exc:
                if driver_errors.is_connection_error(exc):
                    delay = self._outage.failed(exc)
                    continue
                logger.exception("%s: a round failed; trying again next round", self.name)
            else:
                self._outage.ok()
                self.rounds += 1
            delay = self._delay()
