"""Stopping members of a revoked run that are executing right now.

Revocation (:mod:`rhesis_pipeline.monitor.revoke`) stores every unfinished test of a run
as ``cancelled`` at once, so a member that is executing can no longer change its run's
result; without this module it would still hold its worker thread until its attempt
ends (up to its time limit). So each worker thread registers the run of the member it
executes (:func:`executing`), and the worker's revocation-checks thread (a maintenance
service started by the WorkerRegistry middleware) — every ``RHESIS_HEARTBEAT_INTERVAL_S``
— asks the database which of those runs were revoked
and raises :class:`RunCancelled` in the threads executing them (:func:`interrupt_revoked`).

Like dramatiq's time limit, the exception is asynchronous: it reaches a thread when it
next runs Python bytecode, so a call blocked in C (a socket read without timeout) is
stopped only when it returns. It derives from dramatiq's ``Interrupt`` (a BaseException),
so a target's ``except Exception`` does not swallow it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.middleware.threading import Interrupt, raise_thread_exception

from . import db
from .queries import Q

logger = logging.getLogger(__name__)


class RunCancelled(Interrupt):
    """Raised in a thread executing a member of a run that was revoked meanwhile."""


_lock = threading.Lock()
#: thread ident -> run id of the member it executes.
_executing: dict[int, str] = {}
#: thread idents already interrupted (raise once per execution).
_interrupted: set[int] = set()


@contextmanager
def executing(run_id: str) -> Iterator[None]:
    """Mark the current thread as executing a member of *run_id* for the block."""
    ident = threading.get_ident()
    with _lock:
        _executing[ident] = str(run_id)
        _interrupted.discard(ident)
    try:
        yield
    finally:
        with _lock:
            _executing.pop(ident, None)
            _interrupted.discard(ident)


def interrupt_revoked() -> int:
    """Interrupt the threads executing members of revoked runs; returns how many."""
    with _lock:
        runs = sorted(set(_executing.values()))
    if not runs:
        return 0
    with db.connect() as conn:
        revoked = {str(r) for r in conn.execute(Q["revoked_among"], {"ids": runs}).scalars()}
    if not revoked:
        return 0
    count = 0
    with _lock:
        for ident, run_id in _executing.items():
            if run_id in revoked and ident not in _interrupted:
                _interrupted.add(ident)
                raise_thread_exception(ident, RunCancelled)
                count += 1
    if count:
        logger.warning("interrupted %d executing members of revoked runs", count)
    return count
