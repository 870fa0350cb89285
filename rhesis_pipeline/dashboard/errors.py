"""The dashboard's error pages: every error is a plain page with a 4xx/5xx status and a
one-line reason, never a traceback. What a route raises decides the status:

* Starlette's ``HTTPException``: its own (an unknown page 404, a refused action 403);
* :class:`.data.BadRequest`, ``InvalidRunId``, ``AmbiguousRunId``: 400 (a bad filter,
  page cursor or run id);
* ``RunNotFound``: 404 (no such run, or another organization's);
* ``DatabaseUnavailable``, :class:`.state.Busy`: 503 (the database cannot be reached,
  or every connection of the dashboard stayed busy);
* ``NothingToRerun`` and any other ``RhesisError``: 409 (refused, with the reason);
* anything else: 500, logged with its traceback (a bug).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from rhesis_pipeline.dashboard.data import BadRequest
from rhesis_pipeline.dashboard.security import SECURITY_HEADERS
from rhesis_pipeline.dashboard.state import Busy, Dashboard
from rhesis_pipeline.errors import DatabaseUnavailable, NothingToRerun, RhesisError, RunNotFound
from rhesis_pipeline.monitor import InvalidRunId
from rhesis_pipeline.runs.ids import AmbiguousRunId

logger = logging.getLogger(__name__)


class ErrorPages:
    """The exception handlers of one dashboard (:meth:`handlers`)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def handlers(self) -> dict[type[Exception], ExceptionHandler]:
        """Starlette's ``exception_handlers``: the most specific class wins."""
        return {
            HTTPException: self.http_error,
            BadRequest: self.bad_request,
            InvalidRunId: self.bad_request,
            AmbiguousRunId: self.bad_request,
            RunNotFound: self.not_found,
            NothingToRerun: self.refused,
            DatabaseUnavailable: self.unavailable,
            Busy: self.unavailable,
            RhesisError: self.refused,
            Exception: self.server_error,
        }

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.dashboard.error_page(request, exc.status_code, str(exc.detail))

    async def bad_request(self, request: Request, exc: Exception) -> Response:
        return self.dashboard.error_page(request, 400, str(exc))

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.dashboard.error_page(request, 404, str(exc))

    async def refused(self, request: Request, exc: Exception) -> Response:
        return self.dashboard.error_page(request, 409, str(exc))

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        return self.dashboard.error_page(request, 503, str(exc))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        logger.error("dashboard: %s %s failed", request.method, request.url.path, exc_info=exc)
        response = self.dashboard.error_page(
            request, 500, f"the dashboard failed: {type(exc).__name__}"
        )
        # Starlette answers this one outside the middleware: the headers are set here.
        response.headers.update(SECURITY_HEADERS)
        return response
