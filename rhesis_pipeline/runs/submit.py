"""Submitting a test run: :func:`launch_test_run`, one transaction or nothing.

The run's row, one result row per test (status ``queued``) and one member message per
test are written in **one transaction** with bulk statements and one NOTIFY: a run is
there with all of its members or not at all. The tests are streamed, never listed — COPY,
or INSERTs of :data:`INSERT_CHUNK` tests in a session under row-level security (which
Postgres refuses COPY FROM) — and the members' messages are built by the database from
the stored tests.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from rhesis_pipeline.errors import InvalidSubmission, PermissionDenied
from rhesis_pipeline.execution.executors import validate_executor
from rhesis_pipeline.execution.metrics import check_test_metrics
from rhesis_pipeline.runs import messages
from rhesis_pipeline.runs.options import RunOptions
from rhesis_pipeline.storage import bulk, db, driver_errors, engine
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.storage.tenant_context import current_tenant
from rhesis_pipeline.tracing.launch import Launch

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

#: Most tests one run takes.
MAX_TESTS = 1_000_000
#: Tests written per INSERT on the path without COPY (a session under row-level security).
INSERT_CHUNK = 5_000


def launch_test_run(
    tests: Iterable[Mapping[str, Any]],
    *,
    executor: str | Mapping[str, Any],
    name: str | None = None,
    organization_id: str | None = None,
    user_id: str | None = None,
    session: Session | Connection | None = None,
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
        ``rhesis_tenant`` (:func:`rhesis_pipeline.act_as_tenant`) may launch runs for
        its own organization only: for another, :class:`InvalidSubmission` says so
        (row-level security refused it; the caller's transaction must be rolled back).
    options: :class:`RunOptions` or a mapping of its fields (max_retries, min_backoff_ms,
        max_backoff_ms, time_limit_ms).

    *tests* may be any iterable (a generator too): it is read once and streamed to the
    database without ever being listed (see the module's docstring). Raises
    :class:`InvalidSubmission` (naming the field) if the input is malformed, and nothing
    is written (in a caller's *session*, what this call wrote is rolled back to a
    savepoint; the session's own work stays).
    """
    spec = validate_executor(executor)
    run_options = RunOptions.parse(options)
    tenant = current_tenant()
    org = organization_id if organization_id is not None else (tenant and tenant.organization_id)
    user = user_id if user_id is not None else (tenant and tenant.user_id)

    run_id = str(uuid.uuid4())
    tenant_option = {"tenant": {"organization_id": org, "user_id": user}} if org or user else {}
    message_options: dict[str, Any] = {**run_options.message_options(), **tenant_option}
    context: dict[str, Any] = {}
    total = 0
    # The run's trace (when this process traces): on the run's row, and on every member
    # message as traceparent (see rhesis_pipeline.tracing.context).
    launch = Launch(run_id, engine.settings().trace_parent)

    def write(conn: Connection) -> None:
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
                "trace_context": json.dumps(launch.trace.to_json()) if launch.trace else None,
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
        with launch:
            if launch.trace is not None:
                message_options.update(launch.trace.message_options())
            if session is None:
                with db.begin() as conn:
                    write(conn)
            else:
                conn = session if isinstance(session, Connection) else session.connection()
                with driver_errors.translate_errors(), conn.begin_nested():
                    write(conn)
            launch.submitted(total, str(org) if org else None)
    except PermissionDenied as exc:
        refusal = _refused(org, context)
        if refusal is None:
            raise
        raise refusal from exc
    logger.info("submitted run %s: %d tests, %s executor", run_id, total, spec["type"])
    return run_id


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
        if "metrics" in test:  # thresholds in [0, 1], python metrics importable …
            check_test_metrics(test["metrics"], f"tests[{i}].metrics")
        yield key, encode(test if test_id is key else {**test, "id": key})


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
