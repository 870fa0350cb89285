"""The dashboard's Starlette application: which URL goes to which route.

=============================  ======  ==============================================
URL                            Method  Route
=============================  ======  ==============================================
``/``                          GET     :func:`.pages.overview`
``/runs``                      GET     :func:`.pages.runs_list`
``/runs/{run_id}``             GET     :func:`.pages.run_detail`
``/runs/{run_id}/compare``     GET     :func:`.pages.compare` (``?with=RUN_ID``)
``/runs/{run_id}/{action}``    GET     :func:`.actions.confirm` (revoke, rerun)
``/runs/{run_id}/{action}``    POST    :func:`.actions.act`
``/workers``                   GET     :func:`.pages.workers`
``/queues``                    GET     :func:`.pages.queues`
``/api/active-runs``           GET     :func:`.api.active_runs` (JSON)
``/metrics``                   GET     :func:`.api.metrics` (Prometheus)
``/login``                     both    :func:`.login.login`
``/readyz``                    GET     :func:`.readiness.readyz` (open, no token)
``/static/…``                  GET     the package's static files
=============================  ======  ==============================================

Every request passes :class:`.gate.Gate` (token, organization, session cookie) and
:class:`.security.SecurityHeaders` (a strict CSP: the templates hold no inline script or
style); every error is a page of :mod:`.errors`. Routes that read the database run in a
worker thread (:mod:`.state` says why and how many).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from rhesis_pipeline.dashboard import actions, api, pages, readiness
from rhesis_pipeline.dashboard.errors import ErrorPages
from rhesis_pipeline.dashboard.gate import Gate
from rhesis_pipeline.dashboard.login import login
from rhesis_pipeline.dashboard.security import SecurityHeaders
from rhesis_pipeline.dashboard.state import Dashboard, DashboardConfig, package_dir


def create_app(config: DashboardConfig) -> Starlette:
    """The dashboard as an ASGI application (served by ``rhesis-monitor dashboard``)."""
    dashboard = Dashboard(config)
    threaded, bound = dashboard.threaded, dashboard.bound
    routes: list[BaseRoute] = [
        Route("/", threaded(pages.overview)),
        Route("/api/active-runs", threaded(api.active_runs)),
        Route("/runs", threaded(pages.runs_list)),
        Route("/runs/{run_id}", threaded(pages.run_detail)),
        Route("/runs/{run_id}/compare", threaded(pages.compare)),
        Route("/runs/{run_id}/{action}", threaded(actions.confirm), methods=["GET"]),
        Route("/runs/{run_id}/{action}", bound(actions.act), methods=["POST"]),
        Route("/workers", threaded(pages.workers)),
        Route("/queues", threaded(pages.queues)),
        Route("/metrics", threaded(api.metrics)),
        Route("/login", bound(login), methods=["GET", "POST"]),
        Route("/readyz", readiness.readyz),
        Mount("/static", StaticFiles(directory=package_dir("static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(Gate, dashboard=dashboard)],
        exception_handlers=ErrorPages(dashboard).handlers(),
    )
