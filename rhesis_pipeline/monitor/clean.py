"""Purging waiting messages from queues, without leaving a run unfinished.

:func:`clean_queues` deletes the messages waiting (state ``queued``) in one queue and its
delay queue, or in every queue, in **one transaction**:

* every unfinished run that had a member among them is revoked in that transaction
  (:func:`rhesis_pipeline.monitor.revoke.revoke_in`): its other waiting members are
  removed too, its unfinished tests become ``cancelled`` and its callback is enqueued,
  so it ends CANCELLED and is never left IN_PROGRESS;
* completion callbacks (``collect_results``) are kept: deleting one would leave its run
  unfinished for good. They are counted in ``kept_callbacks``;
* messages being processed (``consumed``) and finished ones are not touched.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rhesis_pipeline.monitor.common import CALLBACK_ACTOR, MEMBER_ACTOR, is_uuid
from rhesis_pipeline.monitor.revoke import REVOKED, revoke_in
from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)

CLEAN_REASON = "run cancelled: its queued messages were purged by an operator"


@dataclass
class CleanResult:
    queue: str | None  # None: every queue
    dry_run: bool
    #: (queue, actor, messages) deleted, or that would be.
    messages: list[dict[str, Any]] = field(default_factory=list)
    kept_callbacks: int = 0
    #: Runs cancelled because members of theirs were deleted (or would be).
    cancelled_runs: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return sum(m["messages"] for m in self.messages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "messages": self.messages,
            "kept_callbacks": self.kept_callbacks,
            "cancelled_runs": self.cancelled_runs,
        }


def _tally(counter: Counter[tuple[str, str | None]]) -> list[dict[str, Any]]:
    return [
        {"queue": queue, "actor": actor, "messages": n}
        for (queue, actor), n in sorted(counter.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]


def clean_queues(queue: str | None = None, *, dry_run: bool = False) -> CleanResult:
    """Delete the waiting messages of *queue* (and ``<queue>.DQ``), or of every queue if
    *queue* is None; see the module's docstring. With *dry_run* nothing is changed and
    the result says what would be."""
    result = CleanResult(queue=queue, dry_run=dry_run)
    params = {"queue": queue, "actor": MEMBER_ACTOR}
    if dry_run:
        with db.connect() as conn:
            waiting: Counter[tuple[str, str | None]] = Counter()
            for row in conn.execute(Q["queued_messages_by_actor"], params):
                if row.actor_name == CALLBACK_ACTOR:
                    result.kept_callbacks += row.messages
                else:
                    waiting[(row.queue_name, row.actor_name)] += row.messages
            member_runs = [
                r for r in conn.execute(Q["queued_member_runs"], params).scalars() if is_uuid(r)
            ]
            runs = conn.execute(Q["unfinished_runs_among"], {"ids": member_runs}).scalars()
            result.cancelled_runs = [str(r) for r in runs]
        result.messages = _tally(waiting)
        return result

    with db.begin() as conn:
        for row in conn.execute(Q["queued_messages_by_actor"], params):
            if row.actor_name == CALLBACK_ACTOR:
                result.kept_callbacks += row.messages
        deleted = conn.execute(
            Q["delete_queued_messages"], {"queue": queue, "keep_actor": CALLBACK_ACTOR}
        ).all()
        counter = Counter((r.queue_name, r.actor_name) for r in deleted)
        member_runs = sorted(
            {r.first_arg for r in deleted if r.actor_name == MEMBER_ACTOR and is_uuid(r.first_arg)}
        )
        unfinished = conn.execute(Q["unfinished_runs_among"], {"ids": member_runs}).scalars()
        for run_id in [str(r) for r in unfinished]:
            revoked = revoke_in(conn, run_id, dry_run=False, reason=CLEAN_REASON)
            if revoked.removed_messages:
                # Members of the same run waiting in another queue: removed with it.
                counter[("(other queues of cancelled runs)", MEMBER_ACTOR)] += (
                    revoked.removed_messages
                )
            if revoked.action == REVOKED:
                result.cancelled_runs.append(run_id)
    result.messages = _tally(counter)
    logger.warning(
        "cleaned %s: %d waiting messages deleted, %d runs cancelled, %d callbacks kept",
        queue or "every queue",
        result.deleted,
        len(result.cancelled_runs),
        result.kept_callbacks,
    )
    return result
