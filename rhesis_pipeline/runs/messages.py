"""The pipeline's dramatiq messages: which actors exist, how their messages are built,
encoded and stored in bulk.

Storage code (runs, outcomes, revocation) builds and stores messages through this module
without importing the worker entry point (:mod:`rhesis_pipeline.actors`) or a broker:
a web backend that launches runs needs neither. The actors themselves are declared in
:mod:`rhesis_pipeline.actors` from :data:`ACTORS`, so names, queues and options are
written once.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from dramatiq import Message
from sqlalchemy.engine import Connection

from rhesis_pipeline.errors import MessageTooLarge
from rhesis_pipeline.runs import queues
from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.queries import Q


@dataclass(frozen=True)
class ActorSpec:
    """An actor of the pipeline: its name, queue and dramatiq options."""

    name: str
    queue_name: str
    options: dict[str, Any] = field(default_factory=dict)


#: One member of a run. Retries, backoff and time limit come from the run's options,
#: carried on each message; these are the defaults.
MEMBER = ActorSpec(
    "execute_single_test",
    queues.TESTS,
    {"max_retries": 2, "time_limit": 60_000},
)
#: The completion callback, enqueued exactly once per run by the transaction that stores
#: its last outcome.
CALLBACK = ActorSpec(
    "collect_results",
    queues.CALLBACKS,
    {"max_retries": 10, "min_backoff": 500, "max_backoff": 30_000, "time_limit": 300_000},
)
#: The periodic sweep (rescue, expiry, retention).
SWEEP = ActorSpec(
    "sweep",
    queues.MAINTENANCE,
    {"max_retries": 0, "time_limit": 10 * 60 * 1000},
)
ACTORS = (MEMBER, CALLBACK, SWEEP)

#: Message option set by the rescuer on a member it returns to its queue without
#: counting an attempt (see rhesis_pipeline.maintenance.rescue): the member then runs on
#: the careful path — start marked before it executes, outcome committed before its ack —
#: so that a test that kills its worker is counted. The mark stays.
UNSTARTED = "rhesis_unstarted"

#: NOTIFY channel of revocations (payload: the run id), sent when a revocation commits:
#: workers skip the members of that run they have already claimed.
REVOKED_CHANNEL = "rhesis.revoked"

#: Names the callback message ids of runs: uuid5(CALLBACK_NAMESPACE, run_id).
CALLBACK_NAMESPACE = uuid.UUID("6f1c1d43-5c56-4d1e-9a53-52a7f7c1e0b1")


def channel(queue_name: str) -> str:
    """The NOTIFY channel that wakes the consumers of *queue_name*."""
    return f"dramatiq.{queue_name}.enqueue"


def callback_message_id(run_id: str) -> str:
    """The fixed id of run *run_id*'s callback message (so it is never enqueued twice)."""
    return str(uuid.uuid5(CALLBACK_NAMESPACE, str(run_id)))


def callback_message(run_id: str, tenant: dict[str, Any] | None = None) -> Message[Any]:
    """Run *run_id*'s completion callback message, with its fixed id.

    tenant: ``{"organization_id": …, "user_id": …}`` carried to the callback's worker.
    (The transaction that stores a run's last outcome sets it from the run's row.)
    """
    return Message(
        queue_name=CALLBACK.queue_name,
        actor_name=CALLBACK.name,
        args=(str(run_id),),
        kwargs={},
        options={"tenant": tenant} if tenant else {},
        message_id=callback_message_id(run_id),
        message_timestamp=int(time.time() * 1000),
    )


def run_tenant(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The tenant option of run *run_id*'s messages (None: the run has no tenant)."""
    row = conn.execute(Q["run_tenant"], {"run_id": str(run_id)}).one_or_none()
    if row is None or (row.organization_id is None and row.user_id is None):
        return None
    return {"organization_id": row.organization_id, "user_id": row.user_id}


def encode(message: Message[Any]) -> str:
    """*message* as the JSON text stored in ``dramatiq.queue``; refuses one larger than
    ``RHESIS_MAX_MESSAGE_BYTES`` with an error naming the actor and the fix."""
    encoded = message.encode()
    limit = engine.settings().max_message_bytes
    if len(encoded) > limit:
        raise MessageTooLarge(
            f"message for actor {message.actor_name!r} is {len(encoded)} bytes encoded, "
            f"over RHESIS_MAX_MESSAGE_BYTES={limit}; store large data in a table and "
            "pass its id"
        )
    return encoded.decode("utf-8")


def store(conn: Connection, message: Message[Any]) -> None:
    """Upsert one *message* as queued inside *conn*'s transaction and wake its queue."""
    conn.execute(
        Q["enqueue"],
        {
            "queue_name": message.queue_name,
            "message_id": str(message.message_id),
            "message": encode(message),
        },
    )


def enqueue_run_members(conn: Connection, run_id: str, options: dict[str, Any], total: int) -> None:
    """Store one ``execute_single_test`` message per result row of run *run_id* (written
    in *conn*'s transaction) as queued, built by the database (``enqueue_run_members``),
    and wake the members' queue once. *options*: every member's message options."""
    conn.execute(
        Q["enqueue_run_members"],
        {
            "run_id": str(run_id),
            "queue_name": MEMBER.queue_name,
            "actor_name": MEMBER.name,
            "options": json.dumps(options),
            "timestamp_ms": int(time.time() * 1000),
        },
    )
    conn.execute(
        Q["notify_queue"],
        {"channel": channel(MEMBER.queue_name), "payload": f'{{"batch": {total}}}'},
    )
