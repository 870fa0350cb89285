"""The dashboard over HTTP, served by the real command: pages, filters and pages of runs,
actions with CSRF, access token, read-only, tenants, and clear 4xx pages."""

from __future__ import annotations

import re
import uuid

import httpx

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.runs import scalar
from .support.workers import REPO

EXECUTOR = "tests.support.targets:echo"
#: The dashboard checks, as workers would, that a re-run's executor imports.
ENV = {"PYTHONPATH": str(REPO)}


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def assert_error_page(response: httpx.Response, code: int, text: str) -> None:
    assert response.status_code == code, response.text[:500]
    assert text in response.text
    assert "Traceback" not in response.text


def test_pages_filters_and_keyset_pages(database_url):
    for i in range(120):
        launch_test_run(
            [{"id": 1}],
            executor=EXECUTOR,
            name=f"nightly-{i:03d}",
            organization_id="org-a" if i % 2 else "org-b",
        )
    launch_test_run([{"id": 1}], executor=EXECUTOR, name="special smoke")
    with cli.dashboard(database_url, env=ENV) as (_proc, url), httpx.Client(base_url=url) as http:
        for path in ("/", "/runs", "/workers", "/queues", "/metrics"):
            assert http.get(path).status_code == 200, path
        # Newest first, 50 a page; the next page continues where the first ended.
        first = http.get("/runs").text
        names = re.findall(r">(nightly-\d{3}|special smoke)</a>", first)
        assert names[0] == "special smoke" and names[1] == "nightly-119" and len(names) == 50
        next_link = re.search(r'class="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
        second = re.findall(r">(nightly-\d{3})</a>", http.get(next_link).text)
        assert second[0] == "nightly-070" and len(second) == 50
        # Filters: name, organization, status.
        found = re.findall(
            r">(nightly-\d{3}|special smoke)</a>", http.get("/runs?name=SPECIAL").text
        )
        assert found == ["special smoke"]
        org_a = re.findall(r">(nightly-\d{3})</a>", http.get("/runs?org=org-a").text)
        assert org_a[:2] == ["nightly-119", "nightly-117"]
        assert "No run matches" in http.get("/runs?status=COMPLETED").text
        assert "No run matches" in http.get("/runs?name=smoke").text  # names start with it
        assert "No run matches" in http.get("/runs?name=nightly_").text  # _ is no wildcard
        # Bad input: one clear 4xx page each.
        assert_error_page(http.get("/runs?status=DONE"), 400, "is not one of")
        assert_error_page(http.get("/runs?before=yesterday"), 400, "is not a page cursor")
        assert_error_page(http.get("/runs/not-a-run"), 400, "is not a run id: give the run")
        assert_error_page(http.get(f"/runs/{uuid.uuid4()}"), 404, "no test run with id")
        assert_error_page(http.get("/no/such/page"), 404, "Not Found")


def test_actions_need_the_csrf_token_of_the_session_and_revoke_and_rerun_work(database_url):
    run_id = launch_test_run([{"id": i} for i in range(3)], executor=EXECUTOR, name="to-revoke")
    with (
        cli.dashboard(database_url, env=ENV) as (_proc, url),
        httpx.Client(base_url=url) as alice,
        httpx.Client(base_url=url) as mallory,
    ):
        confirm = alice.get(f"/runs/{run_id}/revoke")
        assert confirm.status_code == 200 and "Revoke this run" in confirm.text
        token = csrf_of(confirm.text)
        # No token, and another session's token: refused, nothing changes.
        assert_error_page(alice.post(f"/runs/{run_id}/revoke"), 403, "CSRF token")
        mallory.get("/")
        assert_error_page(
            mallory.post(f"/runs/{run_id}/revoke", data={"csrf": token}), 403, "CSRF token"
        )
        assert get_run(run_id).status == "QUEUED"
        # The session's own token: revoked.
        done = alice.post(f"/runs/{run_id}/revoke", data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == f"/runs/{run_id}"
        assert get_run(run_id).cancel_requested
        # Re-run (all tests: none failed) from the confirmation page.
        token = csrf_of(alice.get(f"/runs/{run_id}/rerun").text)
        made = alice.post(f"/runs/{run_id}/rerun", data={"csrf": token, "all": "1"})
        assert made.status_code == 303, made.text[-600:]
        new_id = made.headers["location"].rsplit("/", 1)[1]
        assert get_run(new_id).rerun_of == run_id and get_run(new_id).total == 3
        # Nothing failed: re-running the failed ones is refused with a clear page.
        refused = alice.post(f"/runs/{run_id}/rerun", data={"csrf": token})
        assert_error_page(refused, 409, "no failed or errored tests")
        assert_error_page(alice.get(f"/runs/{run_id}/explode"), 404, "no action")


def test_token_login_and_read_only(database_url):
    run_id = launch_test_run([{"id": 1}], executor=EXECUTOR)
    env = {"RHESIS_DASHBOARD_TOKEN": "s3cret-token"}
    with (
        cli.dashboard(database_url, "--read-only", env={**ENV, **env}) as (_proc, url),
        httpx.Client(base_url=url) as http,
    ):
        assert http.get("/").status_code == 303  # to the login form
        assert_error_page(
            http.get("/", headers={"Authorization": "Bearer wrong"}), 401, "wrong access token"
        )
        ok = http.get("/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert http.post("/login", data={"token": "nope"}).status_code == 401
        logged_in = http.post("/login?next=/runs", data={"token": "s3cret-token"})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/runs"
        assert http.get("/runs").status_code == 200  # the cookie now
        assert "s3cret-token" not in str(http.cookies)
        page = http.get(f"/runs/{run_id}/revoke").text
        refused = http.post(f"/runs/{run_id}/revoke", data={"csrf": csrf_of(page)})
        assert_error_page(refused, 403, "read-only")
        assert not get_run(run_id).cancel_requested


def test_a_tenants_dashboard_shows_only_its_organization(database_url):
    mine = launch_test_run([{"id": 1}], executor=EXECUTOR, name="mine", organization_id="org-a")
    theirs = launch_test_run([{"id": 1}], executor=EXECUTOR, name="theirs", organization_id="org-b")
    with (
        cli.dashboard(database_url, "--org", "org-a", env=ENV) as (_proc, url),
        httpx.Client(base_url=url) as http,
    ):
        listing = http.get("/runs").text
        assert ">mine</a>" in listing and ">theirs</a>" not in listing
        assert http.get(f"/runs/{mine}").status_code == 200
        assert_error_page(http.get(f"/runs/{theirs}"), 404, "no test run with id")
        metrics = http.get("/metrics").text
        assert 'rhesis_runs{status="QUEUED"} 1.0' in metrics
    with (
        cli.dashboard(database_url, "--org-header", "X-Rhesis-Org", env=ENV) as (_proc, url),
        httpx.Client(base_url=url) as http,
    ):
        assert_error_page(http.get("/runs"), 403, "X-Rhesis-Org header")
        listing = http.get("/runs", headers={"X-Rhesis-Org": "org-b"}).text
        assert ">theirs</a>" in listing and ">mine</a>" not in listing
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 2
