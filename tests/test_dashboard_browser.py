"""The dashboard in a real headless browser (Debian's Chromium, driven by Playwright)
against real Postgres and real workers. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
import time

import pytest

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.runs import results_by_id, wait_finished
from .support.waiting import wait_until
from .support.workers import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
ENV = {"PYTHONPATH": str(REPO)}


def csp_violations(page) -> list[str]:
    """Console messages of *page* about its Content-Security-Policy (filled as it runs)."""
    found: list[str] = []
    page.on(
        "console",
        lambda m: found.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return found


@pytest.fixture
def browser():
    # Playwright's own browser download cannot run here: Debian's Chromium (.ci/run
    # installs it) is driven instead.
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Chromium is not installed: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.slow
def test_overview_progress_moves_to_100_percent_without_a_reload(database_url, workers, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with cli.dashboard(database_url, env=ENV) as (_proc, url):
        # Given: a run of 40 tests of 0.15 s on one worker with two threads (about 3 s).
        run_id = launch_test_run(
            [{"id": f"t{i:02d}", "sleep_s": 0.15} for i in range(40)],
            executor="tests.support.targets:sleep",
            name="nightly regression",
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        violations = csp_violations(page)
        page.goto(url)
        row = page.locator(f'tr[data-run-id="{run_id}"]')
        assert row.locator(".percent").inner_text() == "0.0%"
        page.evaluate("window.__notReloaded = true")
        # When: a worker runs it.
        workers.start(processes=1, threads=2)
        # Then: the bar moves (seen between 0 and 100) and reaches 100 % in the same page.
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = row.locator(".percent").inner_text()
            seen.add(text)
            if text == "100%" or text == "100.0%":
                break
            if len(seen) == 3:  # under way: a second page, loaded now, for the README
                shot = browser.new_page(viewport={"width": 1280, "height": 900})
                shot.goto(url)
                shot.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
                shot.close()
            time.sleep(0.1)
        assert text in ("100%", "100.0%"), seen
        assert any(t not in ("0.0%", "100%", "100.0%") for t in seen), seen
        assert page.evaluate("window.__notReloaded") is True
        assert violations == []  # the strict CSP blocks nothing the page uses
        assert wait_finished(run_id).status == "COMPLETED"


@pytest.mark.slow
def test_run_page_shows_the_metric_reason_revoke_and_rerun(database_url, workers, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    workers.start(processes=1, threads=2)
    metric = [{"type": "contains", "value": "forty-two"}]
    tests = [
        {"id": f"q{i}", "prompt": "the answer is forty-two", "metrics": metric} for i in range(8)
    ]
    tests[3]["prompt"] = "no idea"
    tests[6]["prompt"] = "the answer is 41"
    failing = launch_test_run(tests, executor="tests.support.targets:echo", name="answers")
    wait_finished(failing)
    with cli.dashboard(database_url, env=ENV) as (_proc, url):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        violations = csp_violations(page)
        # The run page lists the failing tests with their metric's reason.
        page.goto(f"{url}runs/{failing}")
        page.get_by_role("link", name="Failed and errored").click()
        failed_rows = page.locator("#tests tbody tr.failed")
        assert failed_rows.count() == 2
        assert (
            "contains: answer does not contain 'forty-two': 'no idea'"
            in failed_rows.nth(0).inner_text()
        )
        page.goto(f"{url}runs/{failing}")
        page.screenshot(path=str(SCREENSHOTS / "run.png"), full_page=True)

        # Re-running its failed tests makes a new run of exactly those.
        page.get_by_role("link", name="Re-run failed tests…").click()
        page.locator("#confirm").click()
        page.wait_for_url(f"{url}runs/*")
        new_id = page.url.rstrip("/").rsplit("/", 1)[1]
        assert new_id != failing
        assert get_run(new_id).rerun_of == failing
        assert sorted(results_by_id(new_id)) == ["q3", "q6"]

        # Revoking a running run from its page ends it CANCELLED.
        slow = launch_test_run(
            [{"id": f"s{i}", "sleep_s": 30} for i in range(6)],
            executor="tests.support.targets:sleep",
            name="slow",
            options={"time_limit_ms": 60_000},
        )
        wait_until(lambda: get_run(slow).status == "IN_PROGRESS", what="slow run started")
        page.goto(f"{url}runs/{slow}")
        page.get_by_role("link", name="Revoke…").click()
        page.locator("#confirm").click()
        page.wait_for_url(f"{url}runs/{slow}")
        assert wait_finished(slow, timeout=60).status == "CANCELLED"
        page.reload()
        assert "CANCELLED" in page.locator("h1").inner_text()
        assert violations == []
