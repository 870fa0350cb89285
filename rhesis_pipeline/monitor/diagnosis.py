"""What is wrong and what to do about it: findings from one snapshot of the system.

Pure logic over a :class:`Snapshot` (no database access), shared by ``status`` (its
warnings), ``health`` (its reasons) and ``fix`` (its recommendations). A finding of
severity ``problem`` makes the system unhealthy; a ``warning`` does not.

Problems:

* ``no_live_worker`` — no worker process is alive: nothing runs.
* ``queue_without_consumer`` — messages wait in a queue that no live worker consumes
  (a worker started with the wrong ``-Q``, or a producer using a wrong queue name).
* ``stuck_runs`` — runs stuck after the threshold (see :mod:`.stuck`).
* ``stalled_callbacks`` — runs whose every test has an outcome but whose completion
  callback failed for good (rejected after its retries) or is gone: they would never be
  finished. Revoking such a run enqueues its callback again.
* ``orphan_backlog`` — messages held by workers that died more than
  ``ORPHAN_GRACE_S`` past the heartbeat timeout (rescue is not running: no live worker
  and no scheduler), or held by no registered worker at all (never rescued).

Warnings:

* ``dead_worker_holding_messages`` — a worker died recently holding messages; they are
  rescued within seconds by a live worker, or by the next sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from dramatiq.common import q_name

from rhesis_pipeline.monitor.endpoints import EndpointStats
from rhesis_pipeline.monitor.queues import QueueStats
from rhesis_pipeline.monitor.stuck import RunListing
from rhesis_pipeline.monitor.workers import WorkerListing
from rhesis_pipeline.runs.durations import format_seconds

PROBLEM = "problem"
WARNING = "warning"

#: Seconds past the heartbeat timeout after which a dead worker's messages that are
#: still not rescued count as an orphan backlog (the sweep runs every minute).
ORPHAN_GRACE_S = 120.0


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # PROBLEM or WARNING
    message: str
    recommendation: str
    subject: str | None = None  # the queue, worker or run concerned, if one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FindingsView:
    """``problems`` and ``warnings`` of an object holding ``findings``."""

    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]


class StalledCallback(NamedTuple):
    """A run whose every test has an outcome but whose callback failed for good or is
    gone: it will not finish by itself."""

    run_id: str
    name: str
    callback_state: str | None  # its message's queue state; None: the message is gone


class TenantLoad(NamedTuple):
    """An organization's tests in the members' queue (``tenant_load``)."""

    organization_id: str  # "" for tests of no organization
    waiting: int  # queued, or delayed between retries
    running: int  # claimed by a worker


@dataclass
class Snapshot:
    workers: WorkerListing
    queues: list[QueueStats]
    runs: RunListing
    max_hours: float
    heartbeat_timeout_s: float
    #: Runs stored, by status (every RunStatus value, 0 included).
    runs_by_status: dict[str, int] = field(default_factory=dict)
    #: Runs whose callback will not run.
    stalled_callbacks: list[StalledCallback] = field(default_factory=list)
    #: The organizations with the most tests waiting or running, busiest first.
    tenants: list[TenantLoad] = field(default_factory=list)
    #: Whether the server runs autovacuum (None: not known).
    autovacuum: bool | None = None
    #: Endpoint limit keys (the system's view; empty for a tenant).
    endpoints: list[EndpointStats] = field(default_factory=list)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def diagnose(snapshot: Snapshot) -> list[Finding]:
    """Every finding, problems first."""
    found: list[Finding] = []
    workers = snapshot.workers
    if not workers.live:
        dead = f" ({plural(len(workers.dead), 'dead worker')} registered)" if workers.dead else ""
        found.append(
            Finding(
                "no_live_worker",
                PROBLEM,
                f"no live worker: nothing executes tests or callbacks{dead}",
                "start workers: `rhesis-pipeline worker` "
                "(Procfile: `dramatiq rhesis_pipeline.actors`)",
            )
        )
    for queue in snapshot.queues:
        if queue.waiting_without_consumer:
            base = q_name(queue.queue)
            found.append(
                Finding(
                    "queue_without_consumer",
                    PROBLEM,
                    f"queue {queue.queue} has {plural(queue.queued, 'waiting message')} "
                    f"(oldest {format_seconds(queue.oldest_queued_age_s)}) and no live "
                    "worker consumes it",
                    f"start a worker with -Q {base} or fix the queue name",
                    subject=queue.queue,
                )
            )
    if snapshot.runs.stuck:
        hours = f"{snapshot.max_hours:g}h"
        found.append(
            Finding(
                "stuck_runs",
                PROBLEM,
                f"{plural(snapshot.runs.stuck, 'run')} stuck: queued or in progress for "
                f"{hours} or more, or without progress for that long",
                f"list them with `rhesis-monitor check --max-hours {snapshot.max_hours:g}`; "
                "cancel with `rhesis-monitor revoke RUN_ID...` or `rhesis-monitor fix`",
            )
        )
    if snapshot.stalled_callbacks:
        ids = " ".join(stalled.run_id for stalled in snapshot.stalled_callbacks[:10])
        found.append(
            Finding(
                "stalled_callbacks",
                PROBLEM,
                f"{plural(len(snapshot.stalled_callbacks), 'run')} with every test's outcome "
                "stored will never finish: the completion callback failed for good or is gone",
                f"enqueue the callbacks again with `rhesis-monitor revoke {ids}`; see why "
                "they failed in the workers' logs (actor collect_results)",
            )
        )
    backlog_after = snapshot.heartbeat_timeout_s + ORPHAN_GRACE_S
    for worker in workers.gone:  # a stopped worker's claims are orphans too
        if not worker.claims:
            continue
        held = plural(len(worker.claims), "message")
        if worker.heartbeat_age_s > backlog_after:
            found.append(
                Finding(
                    "orphan_backlog",
                    PROBLEM,
                    f"dead worker {worker.name} still holds {held} "
                    f"(last heartbeat {format_seconds(worker.heartbeat_age_s)} ago): "
                    "nothing is rescuing them",
                    "start a worker or the scheduler (`rhesis-pipeline scheduler`), or run "
                    "`rhesis-monitor sweep` now",
                    subject=worker.worker_id,
                )
            )
        else:
            found.append(
                Finding(
                    "dead_worker_holding_messages",
                    WARNING,
                    f"worker {worker.name} died holding {held}",
                    "nothing to do: a live worker or the next sweep puts them back in their queue",
                    subject=worker.worker_id,
                )
            )
    unowned = [c for c in workers.unowned if (c.age_s or 0) > ORPHAN_GRACE_S]
    if unowned:
        found.append(
            Finding(
                "orphan_backlog",
                PROBLEM,
                f"{plural(len(unowned), 'message')} consumed for more than "
                f"{format_seconds(ORPHAN_GRACE_S)} without a claim by a registered worker "
                "(taken by a consumer that is not rhesis-pipeline's?): they are never rescued",
                "stop any stock dramatiq-pg consumer on this database; revoke the runs "
                "concerned with `rhesis-monitor revoke RUN_ID...`",
            )
        )
    if snapshot.autovacuum is False:
        found.append(
            Finding(
                "autovacuum_off",
                WARNING,
                "the database server runs without autovacuum: the queue, claims and "
                "results tables keep every dead row their updates and deletes leave, and "
                "grow without bound under load",
                "turn it on (`ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();`, "
                "or the managed service's flag); a busy queue wants autovacuum_naptime of "
                "a few seconds",
            )
        )
    return sorted(found, key=lambda f: f.severity != PROBLEM)
