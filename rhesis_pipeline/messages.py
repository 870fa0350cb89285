"""The pipeline's dramatiq messages: which actors exist, how their messages are built,
encoded and stored in bulk.

Storage code (runs, outcomes, revocation) builds and stores messages through this module
without importing the worker entry point (:mod:`rhesis_pipeline.actors`) or a broker:
a web backend that launches runs needs neither. The actors themselves are declared in
:mod:`rhesis_pipeline.actors` from :data:`ACTORS`, so names, queues and options are
written once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dramatiq import Message

from . import db, queues
from .errors import MessageTooLarge
from .queries import Q


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

#: Names the callback message ids of runs: uuid5(CALLBACK_NAMESPACE, run_id).
CALLBACK_NAMESPACE = uuid.UUID("6f1c1d43-5c56-4d1e-9a53-52a7f7c1e0b1")


def channel(queue_name: str) -> str:
    """The NOTIFY channel that wakes the consumers of *queue_name*."""
    return f"dramatiq.{queue_name}.enqueue"


def callback_message_id(run_id: str) -> str:
    """The fixed id of run *run_id*'s callback message (so it is never enqueued twice)."""
    return str(uuid.uuid5(CALLBACK_NAMESPACE, str(run_id)))


def uuid4s(n: int) -> list[str]:
    """*n* random (version 4) UUIDs from one read of the OS's random source."""
    raw = os.urandom(16 * n)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * n, 16)]


def member_message(
    run_id: str, test_id: str, *, message_id: str, options: dict[str, Any], timestamp_ms: int
) -> Message:
    """The message of one member of run *run_id* (options: retries, limits, tenant)."""
    return Message(
        queue_name=MEMBER.queue_name,
        actor_name=MEMBER.name,
        args=(run_id, test_id),
        kwargs={},
        options=options,
        message_id=message_id,
        message_timestamp=timestamp_ms,
    )


def callback_message(run_id: str, tenant: dict[str, Any] | None = None) -> Message:
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


def run_tenant(conn, run_id: str) -> dict[str, Any] | None:
    """The tenant option of run *run_id*'s messages (None: the run has no tenant)."""
    row = conn.execute(Q["run_tenant"], {"run_id": str(run_id)}).one_or_none()
    if row is None or (row.organization_id is None and row.user_id is None):
        return None
    return {"organization_id": row.organization_id, "user_id": row.user_id}


def encode(message: Message) -> str:
    """*message* as the JSON text stored in ``dramatiq.queue``; refuses one larger than
    ``RHESIS_MAX_MESSAGE_BYTES`` with an error naming the actor and the fix."""
    encoded = message.encode()
    limit = db.settings().max_message_bytes
    if len(encoded) > limit:
        raise MessageTooLarge(
            f"message for actor {message.actor_name!r} is {len(encoded)} bytes encoded, "
            f"over RHESIS_MAX_MESSAGE_BYTES={limit}; store large data in a table and "
            "pass its id"
        )
    return encoded.decode("utf-8")


def store(conn, message: Message) -> None:
    """Upsert one *message* as queued inside *conn*'s transaction and wake its queue."""
    conn.execute(
        Q["enqueue"],
        {
            "queue_name": message.queue_name,
            "message_id": str(message.message_id),
            "message": encode(message),
        },
    )


def store_many(conn, queue_name: str, rows: Iterable[tuple[str, str]], *, copy: bool = True) -> int:
    """Store (message_id, encoded message) *rows* of one queue as queued, with one COPY
    and one NOTIFY, inside *conn*'s transaction. Returns how many were stored.

    copy=False: one INSERT … SELECT FROM unnest instead, for a session under row-level
    security (rhesis_tenant), which Postgres refuses COPY FROM.
    """
    count = 0

    def counted():
        nonlocal count
        for message_id, payload in rows:
            count += 1
            yield (queue_name, message_id, "queued", payload)

    if copy:
        db.copy_rows(
            conn, "dramatiq.queue", ("queue_name", "message_id", "state", "message"), counted()
        )
    else:
        listed = list(counted())
        conn.execute(
            Q["insert_messages"],
            {
                "queue_name": queue_name,
                "message_ids": [row[1] for row in listed],
                "messages": [row[3] for row in listed],
            },
        )
    if count:
        conn.execute(
            Q["notify_queue"], {"channel": channel(queue_name), "payload": f'{{"batch": {count}}}'}
        )
    return count
