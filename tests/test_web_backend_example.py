"""The web backend example (examples/web_backend.py), served by a real uvicorn process
whose database user is a LOGIN role granted only rhesis_tenant, driven with a real HTTP
client; a real worker runs the runs it launches."""

from __future__ import annotations

import httpx
import pytest

from .support.waiting import wait_until
from .support.web_backend import serve_backend


@pytest.fixture
def backend(web_user, tmp_path):
    """The example app on 127.0.0.1, as the web user; its base URL."""
    with serve_backend(web_user, tmp_path / "web.log") as base:
        yield base


@pytest.mark.slow
def test_an_organization_launches_and_reads_its_run_and_no_other_can(backend, workers):
    workers.start(processes=1, threads=2)
    b = {"X-Organization-Id": "org-b", "X-User-Id": "bob"}
    a = {"X-Organization-Id": "org-a", "X-User-Id": "alice"}
    with httpx.Client(base_url=backend, timeout=30) as http:
        # Given: organization B launches a run through the backend (in the request's own
        # transaction, as rhesis_tenant).
        launched = http.post(
            "/runs",
            headers=b,
            json={
                "name": "b-smoke",
                "tests": [{"id": i, "prompt": f"p{i}"} for i in range(5)],
                "executor": "tests.support.targets:echo",
            },
        )
        assert launched.status_code == 201, launched.text
        run_id = launched.json()["run_id"]

        # Then: B sees it progress to COMPLETED and reads its results ...
        done = wait_until(
            lambda: (
                (r := http.get(f"/runs/{run_id}", headers=b).json())["status"] == "COMPLETED" and r
            ),
            timeout=60,
            what="the run completed",
        )
        assert (done["total"], done["passed"], done["percent"]) == (5, 5, 100.0)
        results = http.get(f"/runs/{run_id}/results", headers=b)
        assert [r["status"] for r in results.json()] == ["passed"] * 5

        # ... while organization A gets "not found" for it.
        assert http.get(f"/runs/{run_id}", headers=a).status_code == 404
        assert http.get(f"/runs/{run_id}/results", headers=a).status_code == 404
        assert http.get("/runs/not-a-uuid", headers=b).status_code == 404
        # A request without a caller is refused before touching the database.
        assert http.get(f"/runs/{run_id}").status_code == 422
        # Bad input is one clear message, nothing stored.
        bad = http.post("/runs", headers=b, json={"tests": [{"id": 1}], "executor": "nope"})
        assert bad.status_code == 422 and "executor" in bad.text
