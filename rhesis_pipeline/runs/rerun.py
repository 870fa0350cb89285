"""Re-running a run's failed and errored tests (or all of them) as a new run.

The new run has the same executor, options and tenant, the name ``"<name> (re-run)"``,
and records where it came from (``test_runs.rerun_of``, shown by ``inspect``, the
dashboard and :func:`rhesis_pipeline.runs.read.get_run`). It is launched like any run, in one
transaction with that record. Used by ``rhesis-pipeline rerun RUN_ID [--all]`` and the
dashboard's re-run action.
"""

from __future__ import annotations

from rhesis_pipeline.errors import NothingToRerun, RunNotFound
from rhesis_pipeline.runs.options import RunOptions
from rhesis_pipeline.runs.states import TestStatus
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

#: Statuses re-run by default: the tests that did not pass (failed a metric, errored
#: after their retries, or were lost with an expired run). Cancelled ones need ``all_tests``.
RERUN_STATUSES = (TestStatus.FAILED, TestStatus.ERROR, TestStatus.LOST)
#: Every status a stored test can have (``all_tests``).
ALL_STATUSES = tuple(s for s in TestStatus if s is not TestStatus.RUNNING)


def rerun(run_id: str, *, all_tests: bool = False, organization_id: str | None = None) -> str:
    """Launch a new run of run *run_id*'s failed and errored tests (every test with
    *all_tests*); returns the new run's id. As *organization_id*'s tenant if given (another
    organization's run is not found). Raises RunNotFound, or NothingToRerun if no test
    qualifies."""
    with tenancy.begin(organization_id) as conn:
        source = conn.execute(Q["rerun_source"], {"run_id": str(run_id)}).one_or_none()
        if source is None:
            raise RunNotFound(f"no test run with id {run_id}")
        statuses = [s.value for s in (ALL_STATUSES if all_tests else RERUN_STATUSES)]
        tests = [
            row.test
            for row in conn.execute(Q["rerun_tests"], {"run_id": str(run_id), "statuses": statuses})
        ]
        if not tests:
            raise NothingToRerun(
                f"run {run_id} has no failed or errored tests: nothing to re-run "
                "(--all runs every test again)"
            )
        new_id = launch_test_run(
            tests,
            executor=source.executor,
            name=f"{source.name} (re-run)",
            organization_id=source.organization_id,
            user_id=source.user_id,
            options=RunOptions(**source.options),
            session=conn,
        )
        conn.execute(Q["mark_rerun"], {"run_id": new_id, "rerun_of": str(run_id)})
    return new_id
