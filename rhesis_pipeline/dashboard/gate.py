"""The gate every request passes first: the access token, the organization of the request,
and the browser's session cookie (to which CSRF tokens are bound).

Paths under :data:`OPEN_PATHS` need no token. Any other needs the token when one is set
(``Authorization: Bearer`` or the login cookie): a wrong bearer token gets a 401 page,
a browser without the cookie is sent to ``/login?next=<path>``. With ``--org-header``
the organization comes from that header, set by a trusted proxy; a request without it
gets a 403 page. No database work: this runs on the event loop.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from rhesis_pipeline.dashboard.security import AUTH_COOKIE, SESSION_COOKIE
from rhesis_pipeline.dashboard.state import Dashboard

#: Paths served without the access token.
OPEN_PATHS = ("/login", "/static/", "/readyz")


class Gate(BaseHTTPMiddleware):
    """Sets ``request.state.session`` and ``request.state.organization``, or refuses."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        super().__init__(app)
        self.dashboard = dashboard

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        dashboard, config = self.dashboard, self.dashboard.config
        request.state.session = request.cookies.get(SESSION_COOKIE) or dashboard.guard.new_session()
        request.state.organization = config.organization
        path = request.url.path
        if not path.startswith(OPEN_PATHS):
            authorization = request.headers.get("authorization")
            if not dashboard.guard.allowed(authorization, request.cookies.get(AUTH_COOKIE)):
                if authorization:
                    return dashboard.error_page(request, 401, "wrong access token")
                return RedirectResponse(f"/login?{urlencode({'next': path})}", 303)
            if config.organization_header and config.organization is None:
                header = (request.headers.get(config.organization_header) or "").strip()
                if not header:
                    return dashboard.error_page(
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
