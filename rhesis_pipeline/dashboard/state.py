"""What every route of the dashboard shares: its configuration, the access guard, the
templates, and the threads that do its blocking work.

**Never block the event loop.** Every read and action goes through psycopg2, which blocks
its thread until Postgres answers (the overview takes ~0.3 s with 1,000,000 finished rows;
a query waiting on a lock takes as long as the lock is held). uvicorn serves every request
on one event loop, so such a call made in an ``async def`` route would stall every other
request, the overview's live progress polls included. The routes are therefore plain
functions run in a worker thread (:meth:`Dashboard.threaded`, :meth:`Dashboard.in_thread`).

**As many threads as database connections.** anyio's default thread limiter (Starlette's
threadpool) has 40 tokens, the process's database pool ``RHESIS_DB_POOL_SIZE`` connections
(5 by default). With 40 threads, 35 requests would sit in threads waiting for a connection
while the overview's static files wait for a thread. Instead the dashboard lets as many
requests into threads as the pool has connections: a thread always finds a connection
(each request uses one at a time), the others wait on the event loop without holding a
thread, and the default limiter stays free for static files and form parsing. A request
that finds no free slot within ``RHESIS_DB_POOL_TIMEOUT`` seconds gets the same error as
an exhausted pool (raise ``RHESIS_DB_POOL_SIZE`` for a busier dashboard).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from rhesis_pipeline.dashboard.security import Guard
from rhesis_pipeline.errors import RhesisError
from rhesis_pipeline.runs.durations import format_duration, format_seconds
from rhesis_pipeline.storage import engine

T = TypeVar("T")

#: A route as written: a plain function of the dashboard and the request (run in a thread).
Handler = Callable[["Dashboard", Request], Response]
#: A route as Starlette calls it.
Endpoint = Callable[[Request], Awaitable[Response]]


class Busy(RhesisError):
    """Every one of the dashboard's database connections stayed busy for
    ``RHESIS_DB_POOL_TIMEOUT`` seconds (a 503 page)."""


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


def package_dir(name: str) -> str:
    """Path of the folder *name* shipped in this package (templates, static)."""
    return str(resources.files("rhesis_pipeline.dashboard").joinpath(name))


def _urlencode_params(params: dict[str, str | None]) -> str:
    """A query string of the parameters that have a value."""
    return urlencode({k: v for k, v in params.items() if v})


templates = Jinja2Templates(directory=package_dir("templates"))
templates.env.globals["format_seconds"] = format_seconds
templates.env.globals["format_duration"] = format_duration
templates.env.filters["urlencode_params"] = _urlencode_params


class Dashboard:
    """One dashboard's shared state; the routes (:mod:`.pages`, :mod:`.api`,
    :mod:`.actions`, :mod:`.login`) take it as their first argument."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.guard = Guard(config.token)
        #: Requests allowed into a thread at once: one per pooled database connection.
        self.slots = engine.pool_size()
        self._slots = anyio.Semaphore(self.slots)

    # -- the request -----------------------------------------------------------------

    @staticmethod
    def organization(request: Request) -> str | None:
        """The organization this request reads and acts as (None: every organization),
        set by :mod:`.gate` from ``--org`` or the proxy's header."""
        organization: str | None = request.state.organization
        return organization

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        """Template *name* with *context* and what every page shows (organization,
        read-only, the session's CSRF token, whether there is a login)."""
        context.update(
            organization=self.organization(request),
            read_only=self.config.read_only,
            csrf=self.guard.csrf_token(request.state.session),
            login=self.guard.token is not None,
        )
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def error_page(self, request: Request, status_code: int, message: str) -> Response:
        """The plain error page: *status_code* and *message*, never a traceback."""
        if not hasattr(request.state, "session"):
            # Refused before the gate ran (Starlette's own 500 handler): a fresh session.
            request.state.session = self.guard.new_session()
            request.state.organization = self.config.organization
        return self.render(request, "error.html", status_code, code=status_code, message=message)

    # -- blocking work ---------------------------------------------------------------

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread once one of :attr:`slots` is free
        (the event loop serves other requests meanwhile); raises Busy if
        none is free within ``RHESIS_DB_POOL_TIMEOUT`` seconds."""
        timeout = engine.settings().db_pool_timeout
        with anyio.move_on_after(timeout) as waiting:
            await self._slots.acquire()
        if waiting.cancelled_caught:
            raise Busy(
                f"no free database connection after {timeout:g}s: the dashboard's "
                f"{self.slots} connections are all busy; raise RHESIS_DB_POOL_SIZE"
            )
        try:
            # The slot is the limit: the thread itself comes from anyio's default
            # limiter, whose 40 tokens this leaves to others unless the pool is larger.
            return await anyio.to_thread.run_sync(function, *args)
        finally:
            self._slots.release()

    def threaded(self, handler: Handler) -> Endpoint:
        """A Starlette endpoint that runs *handler* (a plain route) in a worker thread."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            return await self.in_thread(handler, self, request)

        return endpoint

    def bound(self, handler: Callable[[Dashboard, Request], Awaitable[Response]]) -> Endpoint:
        """A Starlette endpoint of an ``async`` route (one that awaits the request's
        form, then hands its blocking work to :meth:`in_thread`)."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            return await handler(self, request)

        return endpoint
