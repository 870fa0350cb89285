"""The dashboard's routes (Starlette): pages, the live-progress endpoint, actions, metrics.

Pages: ``/`` overview, ``/runs`` (filters, keyset pages), ``/runs/{id}`` (``id``: the
run's UUID or a unique prefix of at least 8 hex digits; summary,
duration histogram, tests with verdicts, messages, callback), ``/workers``, ``/queues``.
Actions — revoke a run, re-run its failed tests — are a confirmation page (GET) and a
POST with a CSRF token. ``/api/active-runs`` feeds the overview's progress bars;
``/metrics`` is the Prometheus exposition. Every error is a plain page with a 4xx/5xx
status (a 500 is logged), never a traceback. Every response carries the security headers
of :mod:`.security` (a strict CSP: the templates hold no inline script or style).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from rhesis_pipeline.dashboard import data
from rhesis_pipeline.dashboard.security import (
    AUTH_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    Guard,
    SecurityHeaders,
)
from rhesis_pipeline.errors import RhesisError, RunNotFound
from rhesis_pipeline.monitor import InvalidRunId, revoke_runs
from rhesis_pipeline.monitor.prometheus import exposition
from rhesis_pipeline.runs.ids import AmbiguousRunId
from rhesis_pipeline.runs.report import format_duration, format_seconds
from rhesis_pipeline.runs.rerun import NothingToRerun, rerun

logger = logging.getLogger(__name__)

#: Paths served without the access token.
OPEN_PATHS = ("/login", "/static/")


@dataclass(frozen=True)
class DashboardConfig:
    """organization: read and act as this organization's tenant only (``--org``).
    organization_header: take the organization from this request header, set by a
    trusted proxy (``--org-header``); a request without it is refused.
    read_only: refuse every action. token: require it (``RHESIS_DASHBOARD_TOKEN``)."""

    organization: str | None = None
    organization_header: str | None = None
    read_only: bool = False
    token: str | None = None


def _package_dir(name: str) -> str:
    return str(resources.files(__package__).joinpath(name))


templates = Jinja2Templates(directory=_package_dir("templates"))
templates.env.globals["format_seconds"] = format_seconds
templates.env.globals["format_duration"] = format_duration
templates.env.filters["urlencode_params"] = lambda params: urlencode(
    {k: v for k, v in params.items() if v}
)


def create_app(config: DashboardConfig) -> Starlette:
    guard = Guard(config.token)

    def organization(request: Request) -> str | None:
        return request.state.organization

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.update(
            organization=organization(request),
            read_only=config.read_only,
            csrf=guard.csrf_token(request.state.session),
            login=guard.token is not None,
        )
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def error_page(request: Request, status_code: int, message: str) -> Response:
        if not hasattr(request.state, "session"):
            request.state.session = guard.new_session()
            request.state.organization = config.organization
        return render(request, "error.html", status_code, code=status_code, message=message)

    async def gate(request: Request, call_next) -> Response:
        request.state.session = request.cookies.get(SESSION_COOKIE) or guard.new_session()
        request.state.organization = config.organization
        path = request.url.path
        if not path.startswith(OPEN_PATHS):
            if not guard.allowed(
                request.headers.get("authorization"), request.cookies.get(AUTH_COOKIE)
            ):
                if request.headers.get("authorization"):
                    return error_page(request, 401, "wrong access token")
                return RedirectResponse(f"/login?{urlencode({'next': path})}", 303)
            if config.organization_header and config.organization is None:
                header = (request.headers.get(config.organization_header) or "").strip()
                if not header:
                    return error_page(
                        request,
                        403,
                        f"no organization: this dashboard reads the organization from the "
                        f"{config.organization_header} header, which the proxy must set",
                    )
                request.state.organization = header
        response = await call_next(request)
        if SESSION_COOKIE not in request.cookies:
            response.set_cookie(
                SESSION_COOKIE,
                request.state.session,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    # -- pages ---------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        current = data.overview(organization(request))
        return render(
            request,
            "overview.html",
            status=current,
            snapshot=current.snapshot,
            active=data.active_runs(organization(request)),
        )

    async def active_runs(request: Request) -> Response:
        return JSONResponse({"runs": data.active_runs(organization(request))})

    async def runs_list(request: Request) -> Response:
        filters = data.RunFilters.parse(request.query_params)
        rows, cursor = data.runs_page(filters, organization(request))
        params = {"status": filters.status, "org": filters.organization, "name": filters.name}
        return render(
            request,
            "runs.html",
            rows=rows,
            filters=filters,
            params=params,
            next_params={**params, "before": cursor} if cursor else None,
            statuses=data.RUN_STATUSES,
        )

    async def run_detail(request: Request) -> Response:
        run_id = data.resolve_run_id(request.path_params["run_id"], organization(request))
        only_failed = request.query_params.get("filter") == "failed"
        try:
            after = int(request.query_params.get("after") or -1)
        except ValueError:
            raise data.BadRequest("after must be a test position (a whole number)") from None
        page = data.run_page(run_id, organization(request), only_failed=only_failed, after=after)
        return render(
            request,
            "run.html",
            page=page,
            run=page.inspection.run,
            only_failed=only_failed,
        )

    async def workers(request: Request) -> Response:
        snapshot = data.overview(organization(request)).snapshot
        return render(request, "workers.html", snapshot=snapshot)

    async def queues(request: Request) -> Response:
        current = data.overview(organization(request))
        return render(request, "queues.html", snapshot=current.snapshot, status=current)

    async def metrics(request: Request) -> Response:
        body, content_type = exposition(organization(request))
        return Response(body, media_type=content_type)

    # -- actions -------------------------------------------------------------------------

    ACTIONS = {
        "revoke": "Revoke this run: its unfinished tests are cancelled and it ends CANCELLED.",
        "rerun": "Re-run this run's failed and errored tests as a new run.",
    }

    async def confirm(request: Request) -> Response:
        run_id = data.resolve_run_id(request.path_params["run_id"], organization(request))
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        run = data.run_page(run_id, organization(request), only_failed=True, after=-1)
        return render(
            request,
            "confirm.html",
            action=action,
            question=ACTIONS[action],
            run=run.inspection.run,
        )

    async def act(request: Request) -> Response:
        run_id = data.resolve_run_id(request.path_params["run_id"], organization(request))
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        if config.read_only:
            raise HTTPException(403, "this dashboard is read-only (--read-only): no actions")
        form = await request.form()
        token = form.get("csrf")
        if not guard.csrf_ok(
            request.cookies.get(SESSION_COOKIE), token if isinstance(token, str) else None
        ):
            raise HTTPException(
                403, "missing or invalid CSRF token: reload the page and confirm again"
            )
        org = organization(request)
        if action == "revoke":
            (outcome,) = revoke_runs([run_id], organization_id=org)
            if outcome.action == "not_found":
                raise RunNotFound(f"no test run with id {run_id}")
            logger.info("dashboard: run %s %s", run_id, outcome.action)
            return RedirectResponse(f"/runs/{run_id}", 303)
        new_id = rerun(run_id, all_tests=form.get("all") == "1", organization_id=org)
        logger.info("dashboard: run %s re-run as %s", run_id, new_id)
        return RedirectResponse(f"/runs/{new_id}", 303)

    # -- login ---------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        if guard.token is None:
            return RedirectResponse("/", 303)
        target = request.query_params.get("next") or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "GET":
            return render(request, "login.html", next=target, failed=False)
        form = await request.form()
        typed = form.get("token")
        if not isinstance(typed, str) or not guard.check_token(typed):
            return render(request, "login.html", 401, next=target, failed=True)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            AUTH_COOKIE,
            guard.auth_cookie(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    # -- errors --------------------------------------------------------------------------

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(request, exc.status_code, str(exc.detail))

    async def bad_request(request: Request, exc: Exception) -> Response:
        return error_page(request, 400, str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_page(request, 404, str(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        return error_page(request, 409, str(exc))

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("dashboard: %s %s failed", request.method, request.url.path, exc_info=exc)
        response = error_page(request, 500, f"the dashboard failed: {type(exc).__name__}")
        # Starlette answers this one outside the middleware: the headers are set here.
        response.headers.update(SECURITY_HEADERS)
        return response

    routes = [
        Route("/", overview),
        Route("/api/active-runs", active_runs),
        Route("/runs", runs_list),
        Route("/runs/{run_id}", run_detail),
        Route("/runs/{run_id}/{action}", confirm, methods=["GET"]),
        Route("/runs/{run_id}/{action}", act, methods=["POST"]),
        Route("/workers", workers),
        Route("/queues", queues),
        Route("/metrics", metrics),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=_package_dir("static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(BaseHTTPMiddleware, dispatch=gate)],
        exception_handlers={
            HTTPException: http_error,
            data.BadRequest: bad_request,
            InvalidRunId: bad_request,
            AmbiguousRunId: bad_request,
            RunNotFound: not_found,
            NothingToRerun: refused,
            RhesisError: refused,
            Exception: server_error,
        },
    )
