"""Stopping members of a revoked run that are executing right now.

Revocation (:mod:`rhesis_pipeline.monitor.revoke`) stores every unfinished test of a run
as ``cancelled`` at once, so a member that is executing can no longer change its run's
result; without this module it would still hold its worker thread until its attempt
ends (up to its time limit). So each worker thread registers the run of the member it
executes (:func:`executing`), and the worker's revocation-checks thread (a maintenance
service started by the WorkerRegistry middleware) — every ``RHESIS_HEARTBEAT_INTERVAL_S``
— asks the database which of those runs were revoked
and raises :class:`RunCancelled` in the threads executing them (:func:`interrupt_revoked`).

Members on the worker's event loop (:mod:`rhesis_pipeline.worker.inflight`) are cancelled
through :func:`register_executor` when the revocation is heard, or at the next check.

Members already claimed (preloaded with their claim) are skipped before they execute:
a revocation NOTIFYs ``messages.REVOKED_CHANNEL`` at commit, the members' consumer of
every worker listens to it and notes the run (:func:`note_revoked`), and a member checks
:func:`was_revoked` before it starts.

Like dramatiq's time limit, the exception is asynchronous: it reaches a thread when it
next runs Python bytecode, so a call blocked in C (a socket read without timeout) is
stopped only when it returns. It derives from dramatiq's ``Interrupt`` (a BaseException),
so a target's ``except Exception`` does not swallow it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dramatiq.middleware.threading import Interrupt, raise_thread_exception

from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)


class RunCancelled(Interrupt):
    """Raised in a thread executing a member of a run that was revoked meanwhile."""


#: Most revoked run ids a process remembers (oldest forgotten first).
REMEMBERED_REVOCATIONS = 10_000

_lock = threading.Lock()
#: Runs revoked since this process started (told by NOTIFY; see note_revoked).
_revoked: dict[str, None] = {}
#: thread ident -> run id of the member it executes.
_executing: dict[int, str] = {}
#: thread idents already interrupted (raise once per execution).
_interrupted: set[int] = set()
#: Other executors of members (the event loop of rhesis_pipeline.worker.inflight): each a pair
#: (the runs it executes members of now, cancel the members of a run).
_executors: list[tuple[Callable[[], set[str]], Callable[[str], None]]] = []


def register_executor(runs: Callable[[], set[str]], cancel: Callable[[str], None]) -> None:
    """Let an executor that is not a thread per member (the event loop) be revoked too:
    *runs* says which runs it executes members of, *cancel* stops those of one run."""
    with _lock:
        _executors.append((runs, cancel))


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


def note_revoked(run_id: str) -> None:
    """Run *run_id* was revoked (a consumer heard it on ``messages.REVOKED_CHANNEL``):
    members of it that this process claimed before are skipped (:func:`was_revoked`)."""
    with _lock:
        if str(run_id) in _revoked:
            return
        _revoked[str(run_id)] = None
        while len(_revoked) > REMEMBERED_REVOCATIONS:
            del _revoked[next(iter(_revoked))]
        cancels = [cancel for _, cancel in _executors]
    for cancel in cancels:
        cancel(str(run_id))
    logger.info("run %s was revoked: members of it claimed here are skipped", run_id)


def was_revoked(run_id: str) -> bool:
    """Whether this process heard that run *run_id* was revoked. A member whose test was
    loaded with its claim checks this before executing, since its run's cancel flag
    was read at the claim."""
    with _lock:
        return str(run_id) in _revoked


def interrupt_revoked() -> int:
    """Interrupt the threads executing members of revoked runs; returns how many."""
    with _lock:
        executing_runs = set(_executing.values())
        for runs_of, _ in _executors:
            executing_runs |= runs_of()
    runs = sorted(executing_runs)
    if not runs:
        return 0
    with db.connect() as conn:
        revoked = {str(r) for r in conn.execute(Q["revoked_among"], {"ids": runs}).scalars()}
    if not revoked:
        return 0
    for run_id in revoked:  # before the interrupts: a freed thread must not start another
        note_revoked(run_id)
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
