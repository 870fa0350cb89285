"""The login form of a dashboard with an access token (``RHESIS_DASHBOARD_TOKEN``).

``GET /login?next=<path>`` shows the form; ``POST`` checks the typed token (constant
time) and sets the login cookie, an HMAC of the token (never the token itself), then
redirects to *next* (a path on this site only: anything else goes to ``/``). A wrong
token gets the form again with 401. Without a token there is nothing to log in to:
``/login`` redirects to ``/``. No database work: this runs on the event loop.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from rhesis_pipeline.dashboard.security import AUTH_COOKIE
from rhesis_pipeline.dashboard.state import Dashboard


def _next_path(request: Request) -> str:
    """Where to go after the login: the ``next`` path if it is one of this site's."""
    target = request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def login(dashboard: Dashboard, request: Request) -> Response:
    """The form (GET) or the check of the typed token (POST)."""
    guard = dashboard.guard
    if guard.token is None:
        return RedirectResponse("/", 303)
    target = _next_path(request)
    if request.method == "GET":
        return dashboard.render(request, "login.html", next=target, failed=False)
    form = await request.form()
    typed = form.get("token")
    if not isinstance(typed, str) or not guard.check_token(typed):
        return dashboard.render(request, "login.html", 401, next=target, failed=True)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        AUTH_COOKIE,
        guard.auth_cookie(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
