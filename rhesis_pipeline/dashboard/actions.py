"""The dashboard's actions on a run: revoke it, or re-run its failed tests.

Each is two requests: ``GET /runs/{run_id}/{action}`` shows a confirmation page holding
the session's CSRF token, ``POST`` to the same URL does it and redirects to the run (the
new run, for a re-run). A read-only dashboard (``--read-only``) refuses every POST with
403, as it does one without the session's own CSRF token. As the request's organization:
another organization's run is not found (404).
"""

from __future__ import annotations

import logging

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from rhesis_pipeline.dashboard import data
from rhesis_pipeline.dashboard.security import SESSION_COOKIE
from rhesis_pipeline.dashboard.state import Dashboard
from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.monitor import revoke_runs
from rhesis_pipeline.runs.rerun import rerun

logger = logging.getLogger(__name__)

#: The actions, with the question their confirmation page asks.
ACTIONS = {
    "revoke": "Revoke this run: its unfinished tests are cancelled and it ends CANCELLED.",
    "rerun": "Re-run this run's failed and errored tests as a new run.",
}


def _action(request: Request) -> str:
    action: str = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    return action


def confirm(dashboard: Dashboard, request: Request) -> Response:
    """The confirmation page of an action (GET): the question and a form to confirm."""
    organization = dashboard.organization(request)
    run_id = data.resolve_run_id(request.path_params["run_id"], organization)
    action = _action(request)
    page = data.run_page(run_id, organization, only_failed=True, after=-1)
    return dashboard.render(
        request,
        "confirm.html",
        action=action,
        question=ACTIONS[action],
        run=page.inspection.run,
    )


async def act(dashboard: Dashboard, request: Request) -> Response:
    """An action (POST): its form is read here, on the event loop; the checks and the
    action itself run in a worker thread (:func:`perform`)."""
    form = await request.form()
    return await dashboard.in_thread(perform, dashboard, request, form)


def perform(dashboard: Dashboard, request: Request, form: FormData) -> Response:
    """Check the run, the action, read-only and the CSRF token (in that order), then act.
    Form fields: ``csrf`` (the session's token), ``all=1`` (a re-run of every test)."""
    organization = dashboard.organization(request)
    run_id = data.resolve_run_id(request.path_params["run_id"], organization)
    action = _action(request)
    if dashboard.config.read_only:
        raise HTTPException(403, "this dashboard is read-only (--read-only): no actions")
    token = form.get("csrf")
    if not dashboard.guard.csrf_ok(
        request.cookies.get(SESSION_COOKIE), token if isinstance(token, str) else None
    ):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and confirm again")
    if action == "revoke":
        (outcome,) = revoke_runs([run_id], organization_id=organization)
        if outcome.action == "not_found":
            raise RunNotFound(f"no test run with id {run_id}")
        logger.info("dashboard: run %s %s", run_id, outcome.action)
        return RedirectResponse(f"/runs/{run_id}", 303)
    new_id = rerun(run_id, all_tests=form.get("all") == "1", organization_id=organization)
    logger.info("dashboard: run %s re-run as %s", run_id, new_id)
    return RedirectResponse(f"/runs/{new_id}", 303)
