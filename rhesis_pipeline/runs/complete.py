"""Completing a run: the status decision, :func:`finish_run` (the body of the
``collect_results`` callback) and the run-finished hooks.

The callback is enqueued exactly once per run, by the transaction that counts its last
outcome (see :mod:`rhesis_pipeline.runs.members`). :func:`finish_run` locks the run,
aggregates its result rows and sets the final status only if the run is not final yet,
so a second delivery of the callback changes nothing. Hooks run after that commit.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from rhesis_pipeline.runs import histograms
from rhesis_pipeline.runs.record import SUMMARY_FIELDS, Run
from rhesis_pipeline.runs.states import RunStatus, TestStatus
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.queries import Q

logger = logging.getLogger(__name__)


def decide_status(
    *, total: int, errored: int, lost: int, cancelled: int, cancel_requested: bool
) -> RunStatus:
    """COMPLETED: every test executed (passed or failed). FAILED: none executed (all
    errored or lost). PARTIAL: some did not execute. CANCELLED: the run was revoked.
    The arguments are counts of tests (and the run's revoked flag)."""
    if cancel_requested:
        return RunStatus.CANCELLED
    not_executed = errored + lost + cancelled
    if not_executed == 0:
        return RunStatus.COMPLETED
    if errored + lost == total:
        return RunStatus.FAILED
    return RunStatus.PARTIAL


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
        if RunStatus(run.status).final:
            logger.info("collect_results: run %s is already %s; nothing to do", run_id, run.status)
            return None
        counts = {
            TestStatus(row.status): int(row._mapping["count"])
            for row in conn.execute(Q["count_results"], {"run_id": run_id})
        }
        unfinished = counts.get(TestStatus.QUEUED, 0)
        if unfinished:
            # Cannot happen through record_outcome (done = total only when every test is
            # terminal); refuse rather than finish a run with tests still running.
            raise RuntimeError(f"run {run_id} has {unfinished} unfinished tests; not finishing")
        passed = counts.get(TestStatus.PASSED, 0)
        failed = counts.get(TestStatus.FAILED, 0)
        errored = counts.get(TestStatus.ERROR, 0)
        lost = counts.get(TestStatus.LOST, 0)
        cancelled = counts.get(TestStatus.CANCELLED, 0)
        status = decide_status(
            total=run.total,
            errored=errored,
            lost=lost,
            cancelled=cancelled,
            cancel_requested=run.cancel_requested,
        )
        finished = conn.execute(
            Q["finish_run"],
            {
                "run_id": run_id,
                "status": status.value,
                "passed": passed,
                "failed": failed,
                "errored": errored,
                "lost": lost,
                "cancelled": cancelled,
            },
        ).one()
        histograms.observe_finished_run(conn, run_id, finished.callback_latency_ms)
    summary = Run.from_row(finished._mapping, json_fields=SUMMARY_FIELDS)
    logger.info(
        "run %s finished %s: %d passed, %d failed, %d errored, %d lost, %d cancelled of %d",
        run_id,
        status,
        passed,
        failed,
        errored,
        lost,
        cancelled,
        run.total,
    )
    return summary


#: A run-finished hook: called with the finished run; what it returns is ignored.
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
    """Call every registered and configured hook with *summary*; one that raises is
    logged and the others still run."""
    for hook in _configured_hooks():
        try:
            hook(summary)
        except Exception:
            logger.exception(
                "run-finished hook %s raised for run %s; the run stays %s",
                getattr(hook, "__qualname__", hook),
                summary.id,
                summary.status,
            )
