"""Test runs: submission, progress, completion. The fan-out/fan-in on Postgres.

Design note — why the callback fires exactly once
-------------------------------------------------
A run of N tests is one ``test_runs`` row with counters and N ``test_results`` rows
(status ``queued``), plus N member messages, all written in **one transaction**
(:func:`launch_test_run`). A member's *terminal* outcome (passed, failed, error after the
last retry, time limit after the last retry, skipped, cancelled, lost) is stored by
:func:`record_outcome` in one statement that

1. moves the result row to its terminal status *only if it is not terminal yet* — a
   redelivered or superseded member changes nothing;
2. only if (1) changed a row, adds one to ``done`` and to the status's counter;
3. only if that made ``done = total``, inserts the ``collect_results`` message into the
   queue (same database, same transaction — no outbox), with a message id derived from
   the run id so that even a repeated insert is a no-op.

``done`` counts terminal transitions, each of which happens once per test, so it reaches
``total`` exactly once, whatever failed: the callback cannot be skipped or doubled.
:func:`finish_run` (the callback's body) locks the run, aggregates the result rows and
sets the final status only if the run is not final yet, so a second delivery is harmless.
Progress is read from the counters, never by counting result rows.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from rhesis_pipeline.errors import InvalidSubmission, PermissionDenied, RhesisError
from rhesis_pipeline.runs import histograms, messages
from rhesis_pipeline.runs.messages import callback_message_id
from rhesis_pipeline.runs.outcomes import Outcome, Recorded, Start, writer
from rhesis_pipeline.runs.record import FINAL_STATUSES, SUMMARY_FIELDS, Run
from rhesis_pipeline.storage import bulk, db, driver_errors, engine, statements, tenancy
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.storage.tenant_context import current_tenant

logger = logging.getLogger(__name__)

#: Terminal statuses of one test.
TERMINAL_RESULTS = ("passed", "failed", "error", "lost", "cancelled")

MAX_TESTS = 1_000_000


@dataclass(frozen=True)
class RunOptions:
    """Per-run execution settings.

    max_retries: retries after a failed attempt (0 = one attempt only); 0..20.
    min_backoff_ms / max_backoff_ms: exponential backoff between attempts, with jitter
        (dramatiq's: the delay is min_backoff * 2**retry, capped, then jittered).
    time_limit_ms: the most one attempt may take; exceeding it fails the attempt
        (and is retried like any failure).
    """

    max_retries: int = 2
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000
    time_limit_ms: int = 60_000

    @classmethod
    def parse(cls, options: Mapping[str, Any] | RunOptions | None) -> RunOptions:
        if options is None:
            return cls()
        if isinstance(options, RunOptions):
            return options
        if not isinstance(options, Mapping):
            raise InvalidSubmission(f"options must be a mapping, got {type(options).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidSubmission(
                f"options: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        values: dict[str, int] = {}
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSubmission(f"options.{key} must be a whole number, got {value!r}")
            values[key] = value
        parsed = cls(**values)
        parsed.validate()
        return parsed

    def validate(self) -> None:
        if not 0 <= self.max_retries <= 20:
            raise InvalidSubmission(f"options.max_retries must be 0..20, got {self.max_retries}")
        if self.min_backoff_ms < 1:
            raise InvalidSubmission("options.min_backoff_ms must be at least 1")
        if self.max_backoff_ms < self.min_backoff_ms:
            raise InvalidSubmission("options.max_backoff_ms must be at least min_backoff_ms")
        if self.time_limit_ms < 1:
            raise InvalidSubmission("options.time_limit_ms must be at least 1")

    def message_options(self) -> dict[str, int]:
        """The options dramatiq's Retries and TimeLimit middleware read from a message."""
        return {
            "max_retries": self.max_retries,
            "min_backoff": self.min_backoff_ms,
            "max_backoff": self.max_backoff_ms,
            "time_limit": self.time_limit_ms,
        }


#: Earlier names of :class:`~rhesis_pipeline.runs.record.Run`, the record every reader
#: returns (get_progress, get_run, recent_runs, the summary run-finished hooks get).
Progress = RunSummary = RunRecord = Run


# -- submission ---------------------------------------------------------------------


#: Tests written per INSERT on the path without COPY (a session under row-level security).
INSERT_CHUNK = 5_000


def _checked_tests(tests: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """(test id, test as JSON) of each test, checked on the way (streamed: nothing is
    listed, so a generator of a million tests costs the memory of one test plus the set of
    ids seen). Raises InvalidSubmission naming the first bad test; the caller's
    transaction is then rolled back, so nothing is written."""
    if isinstance(tests, str | bytes) or not isinstance(tests, Iterable):
        raise InvalidSubmission("tests must be a list of test objects")
    # One encoder for the whole run: json.dumps(default=…) would build one per test.
    encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
    seen: dict[str, int] = {}
    for i, test in enumerate(tests):
        if i >= MAX_TESTS:
            raise InvalidSubmission(f"a run takes at most {MAX_TESTS} tests; tests has more")
        if not isinstance(test, Mapping):
            raise InvalidSubmission(f"tests[{i}] must be an object, got {type(test).__name__}")
        test_id = test.get("id")
        if isinstance(test_id, bool) or not isinstance(test_id, str | int) or str(test_id) == "":
            raise InvalidSubmission(f"tests[{i}].id is missing or empty; give every test an id")
        key = test_id if isinstance(test_id, str) else str(test_id)
        first = seen.setdefault(key, i)
        if first != i:
            raise InvalidSubmission(
                f"tests[{i}].id {key!r} duplicates tests[{first}].id; ids must be unique"
            )
        yield key, encode(test if test_id is key else {**test, "id": key})


def _executor_spec(executor: str | Mapping[str, Any]) -> dict[str, Any]:
    from rhesis_pipeline.execution.executors import validate_executor

    return validate_executor(executor)


def launch_test_run(
    tests: Iterable[Mapping[str, Any]],
    *,
    executor: str | Mapping[str, Any],
    name: str | None = None,
    organization_id: str | None = None,
    user_id: str | None = None,
    session=None,
    options: Mapping[str, Any] | RunOptions | None = None,
) -> str:
    """Submit a test run and return its id (a UUID string).

    tests: the tests, each a mapping with a unique ``id`` (str or int) and any other
        fields (``prompt``, ``metrics`` …); each is stored and handed to the executor.
    executor: ``"module:function"`` (a Python callable importable by the workers, called
        with the test mapping) or a mapping such as ``{"type": "python", "target": …}``.
    name: shown by the CLI; defaults to ``run-<id prefix>``.
    organization_id, user_id: the tenant; default: the current ``tenant_context``.
        It travels with every member message and with the callback.
    session: a SQLAlchemy ``Session`` or ``Connection`` on the same database; the run is
        written inside its transaction and exists — and runs — only if the caller commits.
        Without it, the run is committed before this returns. A session acting as
        ``rhesis_tenant`` (:func:`rhesis_pipeline.storage.tenancy.enter`) may launch runs for
        its own organization only: for another, :class:`InvalidSubmission` says so
        (row-level security refused it; the caller's transaction must be rolled back).
    options: :class:`RunOptions` or a mapping of its fields (max_retries, min_backoff_ms,
        max_backoff_ms, time_limit_ms).

    Everything — the run, one result row per test, one message per test — is written in
    one transaction with bulk statements and one NOTIFY: a run is there with all of its
    members or not at all. *tests* may be any iterable (a generator too): it is read
    once and streamed to the database — COPY, or, in a session that row-level security
    applies to (which Postgres refuses COPY FROM), INSERTs of ``INSERT_CHUNK`` tests —
    without ever listing it; the members' messages are then built by the database from
    the stored tests. Raises :class:`InvalidSubmission` (naming the field) if the input
    is malformed, and nothing is written (in a caller's *session*, what this call wrote
    is rolled back to a savepoint; the session's own work stays).
    """
    spec = _executor_spec(executor)
    run_options = RunOptions.parse(options)
    tenant = current_tenant()
    org = organization_id if organization_id is not None else (tenant and tenant.organization_id)
    user = user_id if user_id is not None else (tenant and tenant.user_id)

    run_id = str(uuid.uuid4())
    tenant_option = {"tenant": {"organization_id": org, "user_id": user}} if org or user else {}
    message_options: dict[str, Any] = {**run_options.message_options(), **tenant_option}
    context: dict[str, Any] = {}
    total = 0

    def write(conn) -> None:
        nonlocal total
        # A session under row-level security (rhesis_tenant) may not COPY FROM.
        context.update(conn.execute(Q["launch_context"]).one()._mapping)
        # The run first (row-level security checks a result's run); its total is known
        # once the tests are read, and set then.
        conn.execute(
            Q["insert_run"],
            {
                "id": run_id,
                "organization_id": org,
                "user_id": user,
                "name": name or f"run-{run_id[:8]}",
                "executor": json.dumps(spec),
                "options": json.dumps(asdict(run_options)),
                "total": 1,
            },
        )
        checked = _checked_tests(tests)
        if not context["row_security"]:
            total = bulk.copy_rows(
                conn,
                "rhesis.test_results",
                ("run_id", "test_id", "position", "test"),
                ((run_id, test_id, str(i), test) for i, (test_id, test) in enumerate(checked)),
            )
        else:
            while chunk := list(itertools.islice(checked, INSERT_CHUNK)):
                conn.execute(
                    Q["insert_results"],
                    {
                        "run_id": run_id,
                        "first": total,
                        "test_ids": [test_id for test_id, _ in chunk],
                        "tests": [test for _, test in chunk],
                    },
                )
                total += len(chunk)
        if not total:
            raise InvalidSubmission("a run needs at least one test; tests is empty")
        if total != 1:
            conn.execute(Q["set_run_total"], {"run_id": run_id, "total": total})
        # The members' messages are built by the database from the result rows just
        # written: one statement, nothing more sent (see enqueue_run_members).
        messages.enqueue_run_members(conn, run_id, message_options, total)

    try:
        if session is None:
            with db.begin() as conn:
                write(conn)
        else:
            # A Session's connection() is a method; a Connection's .connection, its DBAPI one.
            is_session = callable(getattr(session, "connection", None))
            conn = session.connection() if is_session else session
            with driver_errors.translate_errors(), conn.begin_nested():
                write(conn)
    except PermissionDenied as exc:
        refusal = _refused(org, context)
        if refusal is None:
            raise
        raise refusal from exc
    logger.info("submitted run %s: %d tests, %s executor", run_id, total, spec["type"])
    return run_id


def _refused(org: object, context: dict[str, Any]) -> InvalidSubmission | None:
    """Why a session under row-level security may not launch a run for *org*, or None
    if that is not why the database refused it."""
    if not context.get("row_security"):
        return None
    own = context.get("organization_id")
    if own is None:
        return InvalidSubmission(
            f"organization_id {org!r} refused: this session acts as rhesis_tenant with no "
            "organization (app.current_organization is unset or empty) and may launch "
            "nothing; set it in the transaction first with "
            "set_config('app.current_organization', …, true)"
        )
    if org != own:
        return InvalidSubmission(
            f"organization_id {org!r} refused: this session acts as rhesis_tenant for "
            f"organization {own!r} and may launch runs only for it"
        )
    return None


# -- member outcomes -------------------------------------------------------------------


@dataclass
class MemberStart:
    test: dict[str, Any]
    executor: dict[str, Any]
    run_status: str
    cancel_requested: bool
    started_at: datetime

    @classmethod
    def loaded(cls, row: tuple, started_at: datetime) -> MemberStart:
        """From (result status, test, executor, run status, cancel requested): what
        load_member and the consumer's preload return."""
        _status, test, executor, run_status, cancel_requested = row
        return cls(test, executor, run_status, cancel_requested, started_at)


def start_member(
    run_id: str, test_id: str, claim: tuple[str, str | None] | None = None
) -> MemberStart | None:
    """Load what a member needs to execute, mark its claim started, and move its run
    from QUEUED to IN_PROGRESS.

    claim: (message_id, claim token) the member runs under; marked started in the same
    round trip, so that the rescuer counts a lost attempt if its worker dies now.
    Returns None if the member's outcome is already stored (a redelivery): the caller
    must then do nothing. One round trip; another only for a run's first members.
    """
    started_at = datetime.now(timezone.utc)
    message_id, token = claim if claim else (None, None)
    rows = statements.run_prepared(
        "load_member",
        {"run_id": run_id, "test_id": test_id, "message_id": message_id, "token": token},
    )
    if not rows:
        raise RunNotFound(f"run {run_id} has no test {test_id!r}")
    start = MemberStart.loaded(tuple(rows[0][:5]), started_at)
    if rows[0][0] in TERMINAL_RESULTS:
        return None
    if start.run_status == "QUEUED":
        with db.begin() as conn:
            conn.execute(Q["mark_run_started"], {"run_id": run_id})
        start.run_status = "IN_PROGRESS"
    return start


def start_preloaded(preload: tuple, claim: tuple[str, str]) -> MemberStart | None:
    """start_member for a member whose test was loaded with its claim (consumer.PRELOADED):
    no round trip; its claim is marked started by the outcome writer with its next batch
    (if the worker dies before that, the rescuer returns the member uncounted and it runs
    next on the careful path, :func:`start_member`). None: its outcome is already stored."""
    if preload[0] in TERMINAL_RESULTS:
        return None
    started_at = datetime.now(timezone.utc)
    writer().mark_started(Start(claim[0], claim[1], started_at))
    return MemberStart.loaded(preload, started_at)


def record_outcome(
    run_id: str,
    test_id: str,
    *,
    status: str,
    ack: tuple[str, str] | None = None,
    claim: tuple[str, str | None] | None = None,
    **fields: Any,
) -> Recorded:
    """Store a member's terminal outcome once and count it; fire the callback on the last.

    Returns once committed (through the process's outcome writer, which commits waiting
    outcomes together; see :mod:`rhesis_pipeline.runs.outcomes`).
    fields: ``output``, ``metrics``, ``error``, ``duration_ms``, ``worker``, ``attempts``,
    ``started_at`` (see :class:`rhesis_pipeline.runs.outcomes.Outcome`).
    attempts: executions so far, this one included (None keeps the stored count).
    ack: (message_id, queue_name) of the member's message, deleted (acked) in the same
    transaction so that a crash after the commit does not redeliver it.
    claim: (message_id, claim token) the member ran under; if that claim was superseded
    (the message was rescued and claimed again) the outcome is refused and logged.
    """
    result = writer().record(
        _outcome(run_id, test_id, status=status, ack=ack, claim=claim, **fields)
    )
    _log_recorded(run_id, test_id, status, result, claim)
    return result


def defer_member(message_id: str, token: str, delay_s: float) -> bool:
    """Give claimed member *message_id* back to its queue, uncounted, not to be claimed for
    *delay_s* seconds, if it is still claimed under *token* (``defer_member`` in
    queries.sql). True if it went back."""
    rows = statements.run_prepared(
        "defer_member", {"message_id": message_id, "token": token, "delay_s": delay_s}
    )
    return bool(rows and rows[0][0])


def submit_outcome(
    run_id: str,
    test_id: str,
    *,
    status: str,
    ack: tuple[str, str],
    claim: tuple[str, str],
    on_settled: Callable[[bool], object],
    **fields: Any,
) -> None:
    """record_outcome without waiting (the fast path of a preloaded member): the outcome
    writer commits it with its next batch — its message deleted (acked) in the same
    transaction — and then calls ``on_settled(True)``; ``on_settled(False)`` if it was
    refused for good (the message must then run again). Takes record_outcome's fields."""

    def settled(future: Future) -> None:
        exc = future.exception()
        if exc is None:
            _log_recorded(run_id, test_id, status, future.result(), claim)
        else:
            logger.error(
                "outcome of %s/%s not stored: %s",
                run_id,
                test_id,
                exc,
                extra={"run_id": str(run_id), "test_id": str(test_id)},
            )
        on_settled(exc is None)

    outcome = _outcome(run_id, test_id, status=status, ack=ack, claim=claim, **fields)
    writer().submit(outcome).add_done_callback(settled)


def _outcome(
    run_id: str,
    test_id: str,
    *,
    status: str,
    output: Any = None,
    metrics: Any = None,
    error: str | None = None,
    duration_ms: float | None = None,
    worker: str | None = None,
    attempts: int | None = None,
    started_at: datetime | None = None,
    ack: tuple[str, str] | None = None,
    claim: tuple[str, str | None] | None = None,
) -> Outcome:
    if status not in TERMINAL_RESULTS:
        raise ValueError(f"status must be one of {TERMINAL_RESULTS}, got {status!r}")
    return Outcome(
        run_id=str(run_id),
        test_id=str(test_id),
        status=status,
        output=output,
        metrics=metrics,
        error=error,
        duration_ms=duration_ms,
        worker=worker,
        attempts=attempts,
        started_at=started_at,
        ack_message_id=ack[0] if ack else None,
        ack_queue_name=ack[1] if ack else None,
        message_id=claim[0] if claim else None,
        claim_token=claim[1] if claim else None,
    )


def _log_recorded(
    run_id: str,
    test_id: str,
    status: str,
    result: Recorded,
    claim: tuple[str, str | None] | None,
) -> None:
    # Also written by the outcome writer's thread, outside any message: say which run.
    extra = {"run_id": str(run_id), "test_id": str(test_id)}
    if result.fenced_out:
        logger.warning(
            "outcome of %s/%s refused: reported under claim %s, which was superseded "
            "(the message was rescued and claimed again)",
            run_id,
            test_id,
            claim[1] if claim else None,
            extra=extra,
        )
    elif not result.recorded:
        logger.info(
            "outcome of %s/%s already stored; %s ignored", run_id, test_id, status, extra=extra
        )
    elif result.callback_enqueued:
        logger.info(
            "run %s: last outcome counted (%d/%d), collect_results enqueued",
            run_id,
            result.done,
            result.total,
            extra=extra,
        )


# -- completion --------------------------------------------------------------------


def decide_status(
    *, total: int, errored: int, lost: int, cancelled: int, cancel_requested: bool
) -> str:
    """COMPLETED: every test executed (passed or failed). FAILED: none executed (all
    errored or lost). PARTIAL: some did not execute. CANCELLED: the run was revoked."""
    if cancel_requested:
        return "CANCELLED"
    not_executed = errored + lost + cancelled
    if not_executed == 0:
        return "COMPLETED"
    if errored + lost == total:
        return "FAILED"
    return "PARTIAL"


def finish_run(run_id: str) -> Run | None:
    """Aggregate a run's results and set its final status. Returns the run as finished
    (its row, ``duration_s`` and ``callback_latency_ms``; ``as_dict()`` gives
    SUMMARY_FIELDS), or None if the run was already final (a second delivery of the
    callback changes nothing)."""
    with db.begin() as conn:
        run = conn.execute(Q["lock_run"], {"run_id": run_id}).one_or_none()
        if run is None:
            logger.error("collect_results: run %s does not exist", run_id)
            return None
        if run.status in FINAL_STATUSES:
            logger.info("collect_results: run %s is already %s; nothing to do", run_id, run.status)
            return None
        counts: dict[str, int] = {
            status: n for status, n in conn.execute(Q["count_results"], {"run_id": run_id})
        }
        unfinished = counts.get("queued", 0)
        if unfinished:
            # Cannot happen through record_outcome (done = total only when every test is
            # terminal); refuse rather than finish a run with tests still running.
            raise RuntimeError(f"run {run_id} has {unfinished} unfinished tests; not finishing")
        c = {s: counts.get(s, 0) for s in TERMINAL_RESULTS}
        status = decide_status(
            total=run.total,
            errored=c["error"],
            lost=c["lost"],
            cancelled=c["cancelled"],
            cancel_requested=run.cancel_requested,
        )
        finished = conn.execute(
            Q["finish_run"],
            {
                "run_id": run_id,
                "status": status,
                "passed": c["passed"],
                "failed": c["failed"],
                "errored": c["error"],
                "lost": c["lost"],
                "cancelled": c["cancelled"],
            },
        ).one()
        histograms.observe_finished_run(conn, run_id, finished.callback_latency_ms)
    summary = Run.from_row(finished._mapping, json_fields=SUMMARY_FIELDS)
    logger.info(
        "run %s finished %s: %d passed, %d failed, %d errored, %d lost, %d cancelled of %d",
        run_id,
        status,
        c["passed"],
        c["failed"],
        c["error"],
        c["lost"],
        c["cancelled"],
        run.total,
    )
    return summary


# -- hooks -------------------------------------------------------------------------

RunHook = Callable[[Run], object]
_hooks: list[RunHook] = []


def on_run_finished(hook: RunHook) -> RunHook:
    """Register *hook* to be called with the run's summary (a :class:`Run`, as
    :func:`finish_run` returns it) when a run is finished.

    Hooks run in the worker that executes the callback, after the final status is
    committed; one that raises is logged and does not un-finish the run. Register them
    in a module the workers import (``dramatiq rhesis_pipeline.actors myapp.hooks``), or
    name them in ``RHESIS_RUN_HOOKS=module:function,…``. Usable as a decorator.
    """
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def _configured_hooks() -> list[RunHook]:
    hooks = list(_hooks)
    for target in engine.settings().run_hooks:
        module_name, _, attr = target.partition(":")
        hook = getattr(importlib.import_module(module_name), attr)
        if hook not in hooks:
            hooks.append(hook)
    return hooks


def run_hooks(summary: Run) -> None:
    for hook in _configured_hooks():
        try:
            hook(summary)
        except Exception:
            logger.exception(
                "run-finished hook %s raised for run %s; the run stays %s",
                getattr(hook, "__qualname__", hook),
                summary.run_id,
                summary.status,
            )


# -- reading -----------------------------------------------------------------------


def get_progress(run_id: str, *, organization_id: str | None = None) -> Run:
    """Done/total and counters of a run (``.percent``, ``.finished``), from its row (cheap
    enough to poll): the same record as :func:`get_run`."""
    return get_run(run_id, organization_id=organization_id)


def running_members(run_id: str) -> int:
    """How many of the run's tests a worker is executing now (claimed, not finished)."""
    with db.connect() as conn:
        return int(conn.execute(Q["running_members"], {"run_id": str(run_id)}).scalar() or 0)


def is_cancel_requested(run_id: str) -> bool:
    with db.connect() as conn:
        return bool(conn.execute(Q["run_cancel_requested"], {"run_id": str(run_id)}).scalar())


class RunNotFound(RhesisError, LookupError):
    exit_code = 1


# The readers take ``organization_id``: given, they read as that organization's tenant
# (role rhesis_tenant, row-level security; see rhesis_pipeline.storage.tenancy), so another
# organization's run is not found and its rows are never read. None: the system role.


def get_run(run_id: str, *, organization_id: str | None = None) -> Run:
    """One run's row; raises RunNotFound (also for another organization's run)."""
    with tenancy.connect(organization_id) as conn:
        return read_run(conn, run_id)


def read_run(conn, run_id: str) -> Run:
    """Run *run_id*'s row, read on *conn* (as whatever role it acts); raises RunNotFound."""
    row = conn.execute(Q["get_run"], {"run_id": str(run_id)}).one_or_none()
    if row is None:
        raise RunNotFound(f"no test run with id {run_id}")
    return Run.from_row(row._mapping)


def recent_runs(limit: int = 20, *, organization_id: str | None = None) -> list[Run]:
    """The newest runs, newest first (``rhesis-pipeline runs``)."""
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["recent_runs"], {"limit": limit}).all()
    return [Run.from_row(r._mapping) for r in rows]


def get_results(run_id: str, *, organization_id: str | None = None) -> list[dict[str, Any]]:
    """A run's results in suite order (none for another organization's run)."""
    with tenancy.connect(organization_id) as conn:
        rows = conn.execute(Q["get_results"], {"run_id": str(run_id)}).all()
    return [dict(r._mapping) for r in rows]


__all__ = [
    "InvalidSubmission",
    "Progress",
    "Run",
    "RunNotFound",
    "RunOptions",
    "RunRecord",
    "RunSummary",
    "callback_message_id",
    "get_progress",
    "get_results",
    "get_run",
    "launch_test_run",
    "on_run_finished",
]
