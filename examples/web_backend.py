"""A web backend that launches and serves test runs per organization — what the old
system's ``task_launcher`` did, on rhesis-pipeline and row-level security.

    pip install 'rhesis-pipeline[web]'     # fastapi, uvicorn
    DATABASE_URL=postgresql://web_app@db/app uvicorn rhesis_pipeline.examples.web_backend:app

``DATABASE_URL`` is the web backend's own database user, granted ``rhesis_tenant``
(``GRANT rhesis_tenant TO web_app``) and nothing more: every request acts as its
organization's tenant, so Postgres itself keeps organizations apart.

Who the caller is comes from the platform's authentication. Here, to stay small, it is
read from the ``X-Organization-Id`` and ``X-User-Id`` headers, which a trusted proxy (or
your session middleware) must set; never take them from an untrusted client.

* ``POST /runs`` ``{"name", "tests": [...], "executor": ..., "options": {...}}``: launches
  the run inside the request's database transaction, as the caller's organization
  (``tenant_session`` + ``launch_test_run(session=...)``): the run exists only if the
  request commits. 201 ``{"run_id"}``. (A backend with its own SQLAlchemy session calls
  ``act_as_tenant(session, organization_id, user_id)`` in it instead.)
* ``GET /runs/{run_id}``: the run's progress and counts, 404 for another organization's run.
* ``GET /runs/{run_id}/results``: every test's status, error and duration, 404 for another
  organization's run.

Everything comes from ``rhesis_pipeline`` itself: its public API is what this needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from rhesis_pipeline import (
    InvalidSubmission,
    RunNotFound,
    get_results,
    get_run,
    launch_test_run,
    tenant_session,
)

app = FastAPI(title="rhesis-pipeline web backend example")


class Caller(BaseModel):
    organization_id: str
    user_id: str | None = None


def caller(
    x_organization_id: Annotated[str, Header()],
    x_user_id: Annotated[str | None, Header()] = None,
) -> Caller:
    """The authenticated caller (from headers a trusted proxy sets; see the docstring)."""
    if not x_organization_id.strip():
        raise HTTPException(401, "X-Organization-Id is empty")
    return Caller(organization_id=x_organization_id, user_id=x_user_id)


def request_session(who: Annotated[Caller, Depends(caller)]) -> Iterator[Session]:
    """The request's database transaction, acting as the caller's organization."""
    with tenant_session(who.organization_id, who.user_id) as session:
        yield session


class NewRun(BaseModel):
    name: str | None = None
    tests: list[dict[str, Any]] = Field(min_length=1)
    executor: str | dict[str, Any]
    options: dict[str, Any] | None = None


@app.post("/runs", status_code=201)
def launch(
    body: NewRun,
    who: Annotated[Caller, Depends(caller)],
    session: Annotated[Session, Depends(request_session)],
) -> dict[str, str]:
    try:
        run_id = launch_test_run(
            body.tests,
            executor=body.executor,
            name=body.name,
            organization_id=who.organization_id,
            user_id=who.user_id,
            options=body.options,
            session=session,
        )
    except InvalidSubmission as exc:
        raise HTTPException(422, str(exc)) from None
    return {"run_id": run_id}


def _run_id(run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        raise HTTPException(404, f"no test run with id {run_id}") from None


@app.get("/runs/{run_id}")
def progress(run_id: str, who: Annotated[Caller, Depends(caller)]) -> dict[str, Any]:
    try:
        run = get_run(_run_id(run_id), organization_id=who.organization_id)
    except RunNotFound:
        raise HTTPException(404, f"no test run with id {run_id}") from None
    return {
        "run_id": run.id,
        "name": run.name,
        "status": run.status.value,
        "total": run.total,
        "done": run.done,
        "percent": run.percent,
        "passed": run.passed,
        "failed": run.failed,
        "errored": run.errored,
        "lost": run.lost,
        "cancelled": run.cancelled,
    }


@app.get("/runs/{run_id}/results")
def results(run_id: str, who: Annotated[Caller, Depends(caller)]) -> list[dict[str, Any]]:
    try:  # another organization's run does not exist for this one (row-level security)
        rows = get_results(_run_id(run_id), organization_id=who.organization_id)
    except RunNotFound:
        raise HTTPException(404, f"no test run with id {run_id}") from None
    return [
        {
            "test_id": r["test_id"],
            "status": r["status"],
            "error": r["error"],
            "duration_ms": r["duration_ms"],
        }
        for r in rows
    ]
