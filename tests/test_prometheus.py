"""Prometheus metrics at /metrics, computed from the database: parsed with
prometheus_client's own parser, after a real run on real workers, and after retention."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rhesis_pipeline.maintenance import Retention, RetentionConfig
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.runs import scalar, wait_finished
from .support.waiting import wait_until


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url.replace("/healthz", "/metrics"), timeout=20) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def finished(samples, status: str) -> float:
    return samples[("rhesis_tests_finished_total", (("status", status),))]


@pytest.mark.slow
def test_counters_count_a_run_and_do_not_go_down_when_retention_deletes_it(database_url, workers):
    # Given: serve-health, a worker, and a run of 100 tests of which 7 fail a metric.
    workers.start(processes=1, threads=4)
    tests = [{"id": f"t{i}", "prompt": f"p{i}", "expect_pass": i >= 7} for i in range(100)]
    run_id = launch_test_run(tests, executor="tests.support.targets:echo")
    wait_finished(run_id)
    with cli.serve_health(database_url) as (_proc, url):
        # Then: the counters say so, and the histograms saw the 100 tests and 1 callback.
        samples = scrape(url)
        assert (finished(samples, "passed"), finished(samples, "failed")) == (93, 7)
        assert finished(samples, "error") == 0
        assert samples[("rhesis_runs", (("status", "COMPLETED"),))] == 1
        assert samples[("rhesis_test_duration_seconds_count", ())] == 100
        assert samples[("rhesis_test_duration_seconds_bucket", (("le", "+Inf"),))] == 100
        assert samples[("rhesis_callback_latency_seconds_count", ())] == 1
        assert samples[("rhesis_workers", (("state", "live"),))] == 1
        assert samples[("rhesis_queue_consumers", (("queue", "rhesis-tests"),))] == 1
        assert samples[("rhesis_stuck_runs", ())] == 0

        # When: retention deletes the run (finished more than a second ago) ...
        wait_until(
            lambda: scalar(
                "SELECT now() - finished_at > interval '1 second' FROM rhesis.test_runs"
            ),
            what="the run older than the retention",
        )
        result = Retention(
            RetentionConfig(message_retention=timedelta(0), run_retention=timedelta(seconds=1))
        ).run_once()
        assert (result.runs, result.results) == (1, 100)
        assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0

        # Then: ... nothing went down.
        after = scrape(url)
        assert (finished(after, "passed"), finished(after, "failed")) == (93, 7)
        assert after[("rhesis_runs_deleted_total", (("status", "COMPLETED"),))] == 1
        assert after[("rhesis_runs", (("status", "COMPLETED"),))] == 0
        assert after[("rhesis_test_duration_seconds_count", ())] == 100


@pytest.mark.slow
def test_a_tenant_scrape_counts_only_its_organization(database_url, workers):
    from rhesis_pipeline.monitor.prometheus import exposition

    workers.start(processes=1, threads=4)
    mine = launch_test_run(
        [{"id": i, "prompt": "p"} for i in range(5)],
        executor="tests.support.targets:echo",
        organization_id="org-a",
    )
    theirs = launch_test_run(
        [{"id": i, "prompt": "p"} for i in range(3)],
        executor="tests.support.targets:echo",
        organization_id="org-b",
    )
    wait_finished(mine)
    wait_finished(theirs)
    body, _ = exposition("org-a")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    passed = next(
        s.value
        for s in families["rhesis_tests_finished"].samples
        if s.name == "rhesis_tests_finished_total" and s.labels["status"] == "passed"
    )
    assert passed == 5
    system, _ = exposition()
    assert 'rhesis_tests_finished_total{status="passed"} 8.0' in system.decode()


def test_waiting_tests_per_organization_and_a_tenant_sees_only_its_own(database_url):
    from rhesis_pipeline.monitor.prometheus import exposition

    launch_test_run(
        [{"id": i, "prompt": "p"} for i in range(4)],
        executor="tests.support.targets:echo",
        organization_id="org-a",
    )
    launch_test_run(
        [{"id": i, "prompt": "p"} for i in range(2)],
        executor="tests.support.targets:echo",
        organization_id="org-b",
    )

    def waiting(organization_id):
        body, _ = exposition(organization_id)
        return {
            s.labels["organization"]: s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
            if s.name == "rhesis_waiting_tests"
        }

    assert waiting(None) == {"org-a": 4, "org-b": 2}
    assert waiting("org-a") == {"org-a": 4}
    assert waiting("org-b") == {"org-b": 2}
