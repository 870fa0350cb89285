"""The dashboard's security headers and cookies: every response may not be framed, runs
only the dashboard's own files (a strict CSP: the pages hold no inline script or style),
is not sniffed; cookies are Secure over HTTPS, directly or through a trusted proxy. What
it did well stays: the login redirect, 401, CSRF 403, escaped bodies, HttpOnly
SameSite=strict cookies."""

from __future__ import annotations

import re

import httpx
import pytest

from rhesis_pipeline.dashboard import data as dashboard_data
from rhesis_pipeline.dashboard.app import create_app
from rhesis_pipeline.dashboard.state import DashboardConfig
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.asgi import asgi_client
from .support.workers import REPO

EXECUTOR = "tests.support.targets:echo"
TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
EXPECTED = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def assert_secured(response: httpx.Response) -> None:
    got = {name: response.headers.get(name) for name in EXPECTED}
    assert got == EXPECTED, f"{response.request.method} {response.request.url}"


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


@pytest.fixture
def a_run(database_url):
    run_id = launch_test_run([{"id": "t1"}, {"id": "t2"}], executor=EXECUTOR, name="nightly")
    record_outcome(run_id, "t1", status="error", error="<script>alert(1)</script>")
    return run_id


def test_every_response_carries_the_headers_and_pages_need_no_inline_code(a_run):
    with asgi_client(create_app(DashboardConfig(token=TOKEN))) as http:
        pages = [
            "/",
            "/runs",
            f"/runs/{a_run}",
            f"/runs/{a_run}?filter=failed",
            f"/runs/{a_run}/revoke",
            f"/runs/{a_run}/rerun",
            f"/runs/{a_run}/compare",
            f"/runs/{a_run}/compare?with={a_run}",
            "/workers",
            "/queues",
        ]
        for path in pages:
            page = http.get(path, headers=BEARER)
            assert page.status_code == 200, path
            assert_secured(page)
            # Nothing a strict CSP would block: no inline script, style or handler.
            assert not re.search(r"<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=", page.text), path
        for path in ("/metrics", "/api/active-runs", "/static/dashboard.css", "/static/live.js"):
            response = http.get(path, headers=BEARER)
            assert response.status_code == 200, path
            assert_secured(response)
        # The login redirect, the login form, a wrong token, a bad id, an unknown run.
        redirect = http.get("/runs")
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=%2Fruns"
        assert_secured(redirect)
        login = http.get("/login?next=/runs")
        assert login.status_code == 200
        assert_secured(login)
        wrong = http.get("/", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and "wrong access token" in wrong.text
        assert_secured(wrong)
        assert_secured(http.post("/login", data={"token": "nope"}))
        for path, code in (("/runs/nope", 400), ("/runs/ffffffff", 404), ("/no/page", 404)):
            response = http.get(path, headers=BEARER)
            assert response.status_code == code, path
            assert_secured(response)
        # A POST without the session's CSRF token: 403, with the headers.
        refused = http.post(f"/runs/{a_run}/revoke", headers=BEARER, data={"csrf": "forged"})
        assert refused.status_code == 403 and "CSRF token" in refused.text
        assert_secured(refused)
        # The error text is escaped, never run.
        run_page = http.get(f"/runs/{a_run}", headers=BEARER).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
        assert "<script>alert" not in run_page


def test_an_unexpected_failure_carries_the_headers_too(a_run, monkeypatch):
    def broken(_organization):
        raise RuntimeError("boom")

    monkeypatch.setattr(dashboard_data, "overview", broken)
    with asgi_client(create_app(DashboardConfig()), raise_app_exceptions=False) as http:
        failed = http.get("/workers")
    assert failed.status_code == 500 and "the dashboard failed: RuntimeError" in failed.text
    assert_secured(failed)


@pytest.mark.parametrize(
    ("base_url", "secure"), [("http://dashboard.test", False), ("https://dashboard.test", True)]
)
def test_cookies_are_secure_over_https_only(a_run, base_url, secure):
    with asgi_client(create_app(DashboardConfig(token=TOKEN)), base_url=base_url) as http:
        login_page = http.get("/login")
        session = set_cookies(login_page)["rhesis_session"]
        logged_in = http.post("/login?next=/runs", data={"token": TOKEN})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/runs"
        auth = set_cookies(logged_in)["rhesis_auth"]
        for cookie in (session, auth):
            attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
            assert {"httponly", "samesite=strict", "path=/"} <= attributes, cookie
            assert ("secure" in attributes) is secure, cookie
        # The session's own token still acts (CSRF bound to the session cookie).
        token = csrf_of(http.get(f"/runs/{a_run}/revoke").text)
        done = http.post(f"/runs/{a_run}/revoke", data={"csrf": token})
        assert done.status_code == 303
    assert get_run(a_run).cancel_requested


@pytest.mark.slow
def test_behind_a_trusted_proxy_that_says_https_the_cookie_is_secure(database_url):
    # The real command under uvicorn: a proxy on 127.0.0.1 (trusted by default) terminates
    # TLS and says so with X-Forwarded-Proto; an untrusted one is not believed.
    env = {"PYTHONPATH": str(REPO)}
    https = {"X-Forwarded-Proto": "https"}
    with (
        cli.dashboard(database_url, env=env) as (_proc, url),
        httpx.Client(base_url=url) as http,
    ):
        proxied = http.get("/", headers=https)
        assert proxied.status_code == 200
        assert_secured(proxied)
        assert "; secure" in set_cookies(proxied)["rhesis_session"].lower()
        direct = httpx.get(url)
        assert "secure" not in set_cookies(direct)["rhesis_session"].lower()
        assert_secured(direct)
    with (
        cli.dashboard(database_url, "--forwarded-allow-ips", "10.1.2.3", env=env) as (_p, url),
        httpx.Client(base_url=url) as http,
    ):
        untrusted = http.get("/", headers=https)
        assert untrusted.status_code == 200
        assert "secure" not in set_cookies(untrusted)["rhesis_session"].lower()
