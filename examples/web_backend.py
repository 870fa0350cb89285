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
  the run in a database transaction of the request, as the caller's organization
  (``tenant_session`` + ``launch_test_run(session=...)``), committed before the answer:
  201 ``{"run_id"}`` means the run exists. (A backend with its own SQLAlchemy session calls
  ``act_as_tenant(session, organization_id, user_id)`` in it instead.)
* ``GET /runs/{run_id}``: the run's progress and counts, 404 for another organization's run.
* ``GET /runs/{run_id}/results``: every test's status, error and duration, 404 for another
  organization's run.

Everything comes from ``rhesis_pipeline`` itself: its public API is what this needs.

Tracing (OpenTelemetry): with ``rhesis-pipeline[otel]`` and
``opentelemetry-instrumentation-fastapi`` installed and ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, every request is a span, and a run launched by ``POST /runs`` gets a trace of its own
whose root span links to the request's (``RHESIS_TRACE_PARENT=child``: inside it).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from rhesis_pipeline import (
    InvalidSubmission,
    RunNotFound,
    get_results,
    get_run,
    launch_test_run,
    tenant_session,
    tracing_enabled,
)

app = FastAPI(title="rhesis-pipeline web backend example")

if tracing_enabled():  # the OTEL_* variables set up the tracer provider: request spans too
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:  # without the instrumentation, runs are traced, requests are not
        pass
    else:
        FastAPIInstrumentor.instrument_app(app)


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


class NewRun(BaseModel):
    name: str | None = None
    tests: list[dict[str, Any]] = Field(min_length=1)
    executor: str | dict[str, Any]
    options: dict[str, Any] | None = None


@app.post("/runs", status_code=201)
def launch(body: NewRun, who: Annotated[Caller, Depends(caller)]) -> dict[str, str]:
    # The request's transaction, acting as the caller's organization; committed before the
    # 201 is sent (a dependency with yield would commit after the response: a client's
    # immediate GET could miss the run).
    try:
        with tenant_session(who.organization_id, who.user_id) as session:
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
