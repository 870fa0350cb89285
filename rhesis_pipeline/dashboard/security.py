"""Access to the dashboard: an optional token, and CSRF tokens for actions.

* With ``RHESIS_DASHBOARD_TOKEN`` set, every page but ``/login`` and the static files
  needs either ``Authorization: Bearer <token>`` or the session cookie that the login
  form sets after the token was typed. Compared in constant time.
* Every action is a POST carrying a CSRF token: an HMAC of the browser's session id
  (a random cookie) with a secret made at start. Another session's token, or none, is
  refused with 403.
* Every response carries :data:`SECURITY_HEADERS`: a strict Content-Security-Policy (the
  pages use only their own static files: no inline script or style, no CDN), no framing
  by any site (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, since the pages
  carry actions), ``nosniff`` and a same-origin referrer. The cookies are ``Secure`` when
  the request came over HTTPS, directly or through a trusted proxy's
  ``X-Forwarded-Proto`` (uvicorn's proxy headers, ``--forwarded-allow-ips``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.datastructures import MutableHeaders

#: Cookie holding the browser's session id (random; the CSRF token is bound to it).
SESSION_COOKIE = "rhesis_session"
#: Cookie set by the login form: an HMAC of the access token, never the token itself.
AUTH_COOKIE = "rhesis_auth"


#: What a page may load and who may frame it: only the dashboard's own files, no one.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
#: Headers on every response of the dashboard.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every HTTP response (a header
    the app set itself is kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Guard:
    """The access token (None: open) and the secret of this server's CSRF tokens."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._secret = secrets.token_bytes(32)

    def _mac(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()

    # -- access --------------------------------------------------------------------------

    def allowed(self, authorization: str | None, auth_cookie: str | None) -> bool:
        if self.token is None:
            return True
        if authorization and authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization[len("Bearer ") :].strip(), self.token)
        return auth_cookie is not None and hmac.compare_digest(auth_cookie, self.auth_cookie())

    def check_token(self, typed: str) -> bool:
        return self.token is not None and hmac.compare_digest(typed, self.token)

    def auth_cookie(self) -> str:
        assert self.token is not None
        return self._mac("auth:" + self.token)

    # -- CSRF ----------------------------------------------------------------------------

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, session: str) -> str:
        return self._mac("csrf:" + session)

    def csrf_ok(self, session: str | None, token: str | None) -> bool:
        if not session or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(session))
