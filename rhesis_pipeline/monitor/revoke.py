"""Revoking runs: cancel what has not run, finish the run through its normal callback.

Revoking an unfinished run is **one transaction** per run, holding the run's row lock
(the lock every outcome batch takes first, so no outcome of the run is stored meanwhile):

1. ``cancel_requested`` is set: a member delivered from now on is skipped and stored as
   ``cancelled`` (the actor checks it before executing);
2. the messages of its unfinished tests still waiting in a queue (or in the delay queue,
   between retries) are deleted; a message a worker is claiming at that moment is left
   to it, and its member is skipped;
3. every unfinished test is stored as ``cancelled`` through the normal outcome path
   (:func:`rhesis_pipeline.runs.outcomes.write_batch`): counted once, so the last one enqueues
   the run's ``collect_results`` callback exactly once, and the callback sets CANCELLED
   and calls the run-finished hooks, as for any run.

A member already executing finishes its attempt; its outcome is then refused (the test
is already ``cancelled``) and it is not retried. If the transaction does not commit
(Ctrl-C, a lost connection) nothing of it happened. Revoking a run that is final, or
whose every test already has an outcome and whose callback is pending, changes nothing;
if that callback failed for good (rejected after its retries) or is gone, it is enqueued
again, so that no run waits forever for a callback that will not come.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import Connection

from rhesis_pipeline.monitor.common import parse_run_ids
from rhesis_pipeline.monitor.stuck import find_stuck_runs
from rhesis_pipeline.runs import messages
from rhesis_pipeline.runs.messages import REVOKED_CHANNEL
from rhesis_pipeline.runs.states import RunStatus, TestStatus
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)

#: The error text stored on tests cancelled by a revocation.
DEFAULT_REASON = "run revoked by an operator"

#: Actions reported per run.
REVOKED = "revoked"
WOULD_REVOKE = "would_revoke"
ALREADY_FINAL = "already_final"
FINISHING = "finishing"  # every test has an outcome; the callback is pending
CALLBACK_REQUEUED = "callback_requeued"  # ... but it had failed for good: enqueued again
WOULD_REQUEUE_CALLBACK = "would_requeue_callback"
NOT_FOUND = "not_found"


@dataclass
class RevokeOutcome:
    run_id: str
    action: str
    name: str | None = None
    status: str | None = None  # the run's status when it was looked at
    removed_messages: int = 0  # waiting member messages deleted (or that would be)
    running_members: int = 0  # members claimed by a worker: skipped, outcome refused
    cancelled_tests: int = 0  # tests stored as cancelled (or that would be)
    callback_enqueued: bool = False

    @property
    def changed(self) -> bool:
        return self.action in (REVOKED, CALLBACK_REQUEUED)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def revoke_in(
    conn: Connection, run_id: str, *, dry_run: bool, reason: str = DEFAULT_REASON
) -> RevokeOutcome:
    """Revoke run *run_id* inside the caller's transaction on *conn* (see the module's
    docstring); with *dry_run*, only report what would be done."""
    from rhesis_pipeline.runs.outcomes import Outcome, write_batch

    run = conn.execute(
        Q["get_run"] if dry_run else Q["lock_run_for_revoke"], {"run_id": run_id}
    ).one_or_none()
    if run is None:
        return RevokeOutcome(run_id, NOT_FOUND)
    outcome = RevokeOutcome(run_id, ALREADY_FINAL, name=run.name, status=run.status)
    if RunStatus(run.status).final:
        return outcome
    preview = conn.execute(Q["revoke_preview"], {"run_id": run_id}).one()
    outcome.running_members = int(preview.running)
    if preview.unfinished == 0:
        # Nothing to cancel: the run is finished in substance and waits for its callback.
        # If that callback failed for good (or is gone), the run would wait forever:
        # enqueue it again, so that the run gets its final status.
        callback = conn.execute(Q["run_callback_state"], {"run_id": run_id}).scalar()
        if callback in (None, "rejected", "done"):
            outcome.action = WOULD_REQUEUE_CALLBACK if dry_run else CALLBACK_REQUEUED
            if not dry_run:
                requeue_callback(conn, run_id)
                outcome.callback_enqueued = True
        else:
            outcome.action = FINISHING
        return outcome
    outcome.removed_messages = int(preview.queued_messages)
    outcome.cancelled_tests = int(preview.unfinished)
    if dry_run:
        outcome.action = WOULD_REVOKE
        return outcome
    conn.execute(Q["request_cancel"], {"run_id": run_id, "channel": REVOKED_CHANNEL})
    outcome.removed_messages = conn.execute(Q["remove_queued_members"], {"run_id": run_id}).rowcount
    test_ids = list(conn.execute(Q["unfinished_tests"], {"run_id": run_id}).scalars())
    recorded = (
        write_batch(
            [
                Outcome(run_id, test_id, TestStatus.CANCELLED.value, error=reason)
                for test_id in test_ids
            ],
            conn=conn,
        )
        if test_ids
        else []
    )
    conn.execute(Q["commit_synchronously"])
    outcome.cancelled_tests = sum(1 for r in recorded if r.recorded)
    outcome.callback_enqueued = any(r.callback_enqueued for r in recorded)
    outcome.action = REVOKED
    return outcome


def requeue_callback(conn: Connection, run_id: str) -> None:
    """Enqueue run *run_id*'s callback afresh (same message id, attempts from zero) in the
    caller's transaction on *conn*."""
    messages.store(conn, messages.callback_message(run_id, messages.run_tenant(conn, run_id)))
    logger.warning("run %s: its callback had failed for good; enqueued it again", run_id)


def revoke_runs(
    run_ids: Iterable[str],
    *,
    dry_run: bool = False,
    reason: str = DEFAULT_REASON,
    organization_id: str | None = None,
) -> list[RevokeOutcome]:
    """Revoke each run in *run_ids*, one transaction per run, in the order given.

    Returns one RevokeOutcome per distinct id (action ``revoked``, ``would_revoke``,
    ``already_final``, ``finishing``, ``callback_requeued``, ``would_requeue_callback`` or
    ``not_found``). Raises InvalidRunId, before
    touching anything, if an id is not a UUID. A run revoked before an interruption stays
    revoked; the one being revoked when it came is left as it was.

    organization_id: act as that organization's tenant (row-level security): another
    organization's run is ``not_found`` and left untouched.
    """
    outcomes = []
    for run_id in parse_run_ids(run_ids):
        if dry_run:
            with tenancy.connect(organization_id) as conn:
                outcome = revoke_in(conn, run_id, dry_run=True, reason=reason)
        else:
            with tenancy.begin(organization_id) as conn:
                outcome = revoke_in(conn, run_id, dry_run=False, reason=reason)
        if outcome.action == REVOKED:
            logger.warning(
                "revoked run %s (%s): %d waiting messages removed, %d tests cancelled, "
                "%d running members will be skipped%s",
                run_id,
                outcome.name,
                outcome.removed_messages,
                outcome.cancelled_tests,
                outcome.running_members,
                "; callback enqueued" if outcome.callback_enqueued else "",
            )
        outcomes.append(outcome)
    return outcomes


def revoke_stuck_runs(
    max_hours: float,
    *,
    dry_run: bool = False,
    reason: str | None = None,
    organization_id: str | None = None,
) -> list[RevokeOutcome]:
    """Revoke every run stuck after *max_hours* (see :mod:`.stuck`), oldest first (of
    organization *organization_id* only, found and revoked as its tenant, if given)."""
    stuck = find_stuck_runs(max_hours, organization_id=organization_id)
    why = reason or f"run revoked by an operator: stuck for more than {max_hours:g}h"
    return revoke_runs(
        [r.id for r in stuck], dry_run=dry_run, reason=why, organization_id=organization_id
    )
