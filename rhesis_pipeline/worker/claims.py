"""Claiming messages from ``dramatiq.queue``: a batch per statement, fair by organization.

Why not dramatiq-pg's claim
---------------------------
dramatiq-pg learns of a message only from its NOTIFY payload (one NOTIFY per message)
or by loading *every* pending message of its queue into memory at start and on a random
1-in-301 idle tick; it claims one message per transaction with a session advisory lock,
acks one per transaction, and keeps two connections per queue. A bulk submission of
10,000 tests with one NOTIFY would sit unseen.

How a claim works
-----------------
* One statement claims up to ``limit`` queued messages
  (``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)``, ``claim_messages``) and
  records each claim for this worker with a fresh token (fencing: a result reported
  under a superseded token is refused). The consumer decides the limit (its free
  prefetch) and claims again at once when a batch came back full.
* Delay queues (``<queue>.DQ``) claim only messages due within ``DELAY_HORIZON_MS``;
  dramatiq holds them in memory until their eta, then moves them to the real queue.
* Members' tests come with their claim (``load_claimed``, in the same round trip and
  transaction): the fast path starts them without another round trip
  (:class:`~rhesis_pipeline.worker.delivery.PreloadedStart`). A member marked
  ``UNSTARTED`` (a suspect: it was running in a process that died) takes the careful
  path and loads its test itself.
* With ``RHESIS_FAIR_CLAIMS`` (or a cap, ``RHESIS_TENANT_MAX_RUNNING``) members are
  claimed round-robin by organization (``claim_fair_messages``), starting after the
  organization served last, so that one tenant's backlog does not hold another's run.
  Capped claims of a queue run one at a time (``claim_lock``), so that what each
  organization holds is counted exactly.
* A claimed row that is not a decodable dramatiq message (a poison message) is set to
  ``rejected`` and logged with its id and the reason; it never blocks the queue.

Rows are read by column name: each query's result columns are a NamedTuple below, whose
field names tests/test_worker_rows.py checks against the query.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NamedTuple

from dramatiq.common import current_millis
from dramatiq.message import Message

from rhesis_pipeline.runs.messages import MEMBER, UNSTARTED
from rhesis_pipeline.storage import engine
from rhesis_pipeline.storage.locks import CLAIM_LOCK_CLASS
from rhesis_pipeline.worker.connection import ConsumerConnection, Step
from rhesis_pipeline.worker.delivery import PreloadedStart

logger = logging.getLogger(__name__)

#: Delay queues: claim messages whose eta is at most this many ms ahead.
DELAY_HORIZON_MS = 10_000
#: Most messages one claim statement takes.
MAX_BATCH = 500


class ClaimedRow(NamedTuple):
    """A row of ``claim_messages``."""

    message_id: uuid.UUID
    message: str
    token: uuid.UUID | None
    #: set_config's result (the claim commits asynchronously); unused.
    set_config: str


class FairClaimedRow(NamedTuple):
    """A row of ``claim_fair_messages``."""

    message_id: uuid.UUID
    message: str
    token: uuid.UUID | None
    #: The organization's place in this claim's rotation (1, 2, …).
    n: int
    #: The message's organization ('' for none).
    org: str
    set_config: str


class LoadedClaimRow(NamedTuple):
    """A row of ``load_claimed``: a claimed message and, for a member, its test."""

    message_id: uuid.UUID
    message: str
    token: uuid.UUID | None
    org: str
    #: The test's result status; None when the message is not a member's.
    status: str | None
    test: dict[str, Any] | None
    executor: dict[str, Any] | None
    run_status: str | None
    cancel_requested: bool | None
    runs_started: int

    def preloaded(self) -> PreloadedStart | None:
        """The member's test, if this row has one."""
        if self.status is None or self.test is None or self.executor is None:
            return None
        return PreloadedStart(
            status=self.status,
            test=self.test,
            executor=self.executor,
            run_status=str(self.run_status),
            cancel_requested=bool(self.cancel_requested),
        )


class Claimed(NamedTuple):
    """A claimed, decoded message, ready to be handed to dramatiq."""

    message: Message[Any]
    #: The token of its claim (None: claimed without a worker id, nothing recorded).
    token: str | None
    preloaded: PreloadedStart | None


class Batch(NamedTuple):
    """What one claim took."""

    claimed: list[Claimed]
    #: The claim took as many rows as it could (poison included): more may be waiting.
    full: bool


class Claimer:
    """Claims the messages of one queue on its consumer's connection."""

    def __init__(self, queue_name: str, connection: ConsumerConnection) -> None:
        self.queue_name = queue_name
        self._connection = connection
        self.is_delay_queue = queue_name.endswith(".DQ")
        self.is_member_queue = queue_name == MEMBER.queue_name
        settings = engine.settings()
        #: Per-organization cap on claimed members (RHESIS_TENANT_MAX_RUNNING; None: none).
        self._cap = (settings.tenant_max_running or None) if self.is_member_queue else None
        #: Members are claimed round-robin by organization (RHESIS_FAIR_CLAIMS; a cap
        #: needs the fair claim, which counts per organization).
        self._fair = self.is_member_queue and (settings.fair_claims or self._cap is not None)
        #: The organization served last by the fair claim (the rotation goes on after it).
        self._after_org = ""

    def claim(self, limit: int, worker_id: str | None) -> Batch:
        """Claim up to *limit* messages for worker *worker_id* (None: no claims are
        recorded, as outside a registered worker). Poison rows are rejected here."""
        # Members' tests come with their claim (load_claimed; no claim is recorded, so
        # nothing is loaded, without a worker id).
        with_tests = self.is_member_queue and worker_id is not None
        rows: list[ClaimedRow] | list[FairClaimedRow] | list[LoadedClaimRow]
        if self._fair:
            rows = self._claim_fairly(limit, worker_id, with_tests)
        else:
            due_before = current_millis() + (DELAY_HORIZON_MS if self.is_delay_queue else 0)
            claim: Step = (
                "claim_messages",
                {
                    "queue_name": self.queue_name,
                    "limit": limit,
                    "check_eta": self.is_delay_queue,
                    "due_before_ms": due_before,
                    "worker_id": worker_id,
                },
            )
            if with_tests:
                rows = self._claim_and_load(claim, worker_id)
            else:
                rows = [ClaimedRow._make(row) for row in self._connection.execute(*claim)]
        return Batch(self._decode_all(rows), full=len(rows) == limit)

    def _claim_and_load(self, claim: Step, worker_id: str | None) -> list[LoadedClaimRow]:
        """Run *claim* and ``load_claimed`` in one round trip and transaction: the claimed
        messages with their members' tests."""
        rows = self._connection.execute_batch([claim, self._load_claimed(worker_id)])
        return [LoadedClaimRow._make(row) for row in rows]

    def _load_claimed(self, worker_id: str | None) -> Step:
        return ("load_claimed", {"worker_id": worker_id, "queue_name": self.queue_name})

    def _claim_fairly(
        self, limit: int, worker_id: str | None, with_tests: bool
    ) -> list[FairClaimedRow] | list[LoadedClaimRow]:
        """Claim round-robin by organization (``claim_fair_messages``), starting after the
        organization served last. With RHESIS_TENANT_MAX_RUNNING, the claim runs in a
        transaction after the queue's claim lock, so that what each organization already
        holds is counted exactly (in a snapshot taken after every earlier claim committed)."""
        claim: Step = (
            "claim_fair_messages",
            {
                "queue_name": self.queue_name,
                "limit": limit,
                "after_org": self._after_org,
                "cap": self._cap,
                "worker_id": worker_id,
            },
        )
        fair: list[FairClaimedRow] = []
        loaded: list[LoadedClaimRow] = []
        if self._cap is None and with_tests:
            loaded = self._claim_and_load(claim, worker_id)
        elif self._cap is None:
            fair = [FairClaimedRow._make(row) for row in self._connection.execute(*claim)]
        else:
            with self._connection.transaction():
                self._connection.execute(
                    "claim_lock", {"lock_class": CLAIM_LOCK_CLASS, "queue_name": self.queue_name}
                )
                fair = [FairClaimedRow._make(row) for row in self._connection.execute(*claim)]
                if with_tests:
                    loaded = [
                        LoadedClaimRow._make(row)
                        for row in self._connection.execute(*self._load_claimed(worker_id))
                    ]
        if with_tests:
            if loaded:
                # The last organization served in the rotation is the greatest one at or
                # before the one served last time (the ring wrapped), else the greatest.
                orgs = {row.org for row in loaded}
                wrapped = [org for org in orgs if org <= self._after_org]
                self._after_org = max(wrapped or orgs)
            return loaded
        if fair:
            self._after_org = max(fair, key=lambda row: row.n).org
        return fair

    def _decode_all(
        self, rows: list[ClaimedRow] | list[FairClaimedRow] | list[LoadedClaimRow]
    ) -> list[Claimed]:
        """The decodable messages of *rows*; the others are rejected as poison."""
        poison: list[tuple[str, str]] = []
        claimed: list[Claimed] = []
        for row in rows:
            message_id = str(row.message_id)
            try:
                message = decode(message_id, row.message)
            except Exception as exc:
                poison.append((message_id, f"{type(exc).__name__}: {exc}"[:500]))
                continue
            preloaded = None
            if isinstance(row, LoadedClaimRow) and not message.options.get(UNSTARTED):
                preloaded = row.preloaded()
            token = None if row.token is None else str(row.token)
            claimed.append(Claimed(message, token, preloaded))
        if poison:
            self._reject_poison(poison)
        return claimed

    def _reject_poison(self, poison: list[tuple[str, str]]) -> None:
        self._connection.execute(
            "reject_poison_messages",
            {"ids": [p[0] for p in poison], "reasons": [p[1] for p in poison]},
        )
        for message_id, reason in poison:
            logger.error(
                "rejected poison message %s on queue %s: not a dramatiq message (%s)",
                message_id,
                self.queue_name,
                reason,
            )


def decode(message_id: str, raw: str) -> Message[Any]:
    """The dramatiq message *raw* (JSON) of row *message_id*; raises ValueError (or a
    decoding error) if it is not one."""
    message = Message.decode(raw.encode("utf-8"))
    if not isinstance(message.args, tuple | list) or not isinstance(message.kwargs, dict):
        raise ValueError("args must be a list and kwargs an object")
    if str(message.message_id) != message_id:
        raise ValueError(f"payload says message_id {message.message_id}")
    return message
