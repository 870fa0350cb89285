"""Asynchronous metric types (the LLM judge's plumbing): awaited on the worker's event loop,
their calls through the same endpoint limits as the tests' own HTTP calls, a 429 from
their endpoint put back (the key paused, no attempt counted)."""

from __future__ import annotations

import pytest

from benchmarks.endpoint import SlowEndpoint
from rhesis_pipeline.runs.scores import metric_summary
from rhesis_pipeline.runs.submit import launch_test_run

from .support.metrics import METRIC_MODULES
from .support.runs import results_by_id, wait_finished


@pytest.mark.slow
@pytest.mark.parametrize(
    "target", ["tests.support.targets:echo", "tests.support.metrics:async_echo"]
)
def test_a_rate_limited_metric_endpoint_is_paused_not_counted(workers, database_url, target):
    # Given a metric endpoint that admits 5 requests a second (429 + retry-after-ms beyond)
    # and a metric that declares max_concurrency 3 for it; tests on threads (echo) or on
    # the loop (async_echo)
    workers.start(processes=1, threads=4, modules=METRIC_MODULES)
    with SlowEndpoint(latency_s=0.05, rate_per_s=5, retry_after_s=0.4, retry_after_form="ms") as ep:
        metric = {"type": "probe", "name": "probe",
                  "endpoint": {"url": ep.url, "max_concurrency": 3}}  # fmt: skip
        tests = [{"id": f"t{i}", "prompt": f"p{i}", "metrics": [metric]} for i in range(20)]
        run_id = launch_test_run(tests, executor=target, options={"max_retries": 0})
        run = wait_finished(run_id, timeout=90)
        stats = ep.stats()
    # Then every test passed at its first attempt although the endpoint answered 429s
    results = results_by_id(run_id)
    assert (run.passed, run.errored) == (20, 0), {k: r["error"] for k, r in results.items()}
    assert {r["attempts"] for r in results.values()} == {1}
    assert stats["answered_429"] > 0 and stats["answered_200"] == 20
    # and the metric's max_concurrency held (the endpoint budget, shared by every worker)
    assert stats["peak_in_flight"] <= 3
    assert results["t7"]["metrics"][0]["reason"] == "echo: p7"
    [summary] = metric_summary(run_id)
    assert (summary.name, summary.judged, summary.mean_score) == ("probe", 20, 1.0)
