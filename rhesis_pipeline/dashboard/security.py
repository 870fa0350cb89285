"""Access to the dashboard: an optional token, and CSRF tokens for actions.

* With ``RHESIS_DASHBOARD_TOKEN`` set, every page but ``/login`` and the static files
  needs either ``Authorization: Bearer <token>`` or the session cookie that the login
  form sets after the token was typed. Compared in constant time.
* Every action is a POST carrying a CSRF token: an HMAC of the browser's session id
  (a random cookie) with a secret made at start. Another session's token, or none, is
  refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Cookie holding the browser's session id (random; the CSRF token is bound to it).
SESSION_COOKIE = "rhesis_session"
#: Cookie set by the login form: an HMAC of the access token, never the token itself.
AUTH_COOKIE = "rhesis_auth"


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
