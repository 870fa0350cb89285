"""The LLM judge end to end: real workers, the FakeJudge over HTTP, the endpoint limits
every worker shares. A judge's 429 pauses its key without counting an attempt; a judge
answer that does not parse is retried as the run's retries say, then the test's error
quoting it; the API key travels as ``{{env:NAME}}`` and is filled in by the worker."""

from __future__ import annotations

import pytest

from rhesis_pipeline.demo_judge import FakeJudge
from rhesis_pipeline.runs.scores import metric_summary
from rhesis_pipeline.runs.submit import launch_test_run

from .support.metrics import METRIC_MODULES
from .support.runs import results_by_id, wait_finished

RUBRIC = 'The answer names the city "Paris".'


def judge_metric(url: str, rubric: str = RUBRIC, **endpoint: object) -> dict[str, object]:
    return {
        "type": "llm_judge",
        "name": "judge",
        "rubric": rubric,
        "threshold": 0.7,
        "endpoint": {"url": url, "model": "fake", **endpoint},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "target", ["tests.support.targets:echo", "tests.support.metrics:async_echo"]
)
def test_judged_scores_429s_honoured_through_the_shared_limits(workers, database_url, target):
    # Given a judge that answers 429 (Retry-After 0.3 s) to its first 4 calls and wants a
    # bearer key, which the suite names as {{env:JUDGE_KEY}} and only the worker has
    workers.start(processes=1, threads=4, modules=METRIC_MODULES, env={"JUDGE_KEY": "k-123"})
    with FakeJudge(throttle_first=4, retry_after_s=0.3, latency_s=0.05, api_key="k-123") as judge:
        metric = judge_metric(
            judge.url,
            headers={"Authorization": "Bearer {{env:JUDGE_KEY}}"},
            max_concurrency=2,
        )
        tests = [
            {
                "id": f"t{i}",
                "prompt": "Paris, of course" if i % 2 else "London",
                "metrics": [metric],
            }
            for i in range(16)
        ]
        run_id = launch_test_run(tests, executor=target, options={"max_retries": 0})
        run = wait_finished(run_id, timeout=90)
        stats = judge.stats()
    # Then the judge's verdicts decided the tests, at their first attempt
    results = results_by_id(run_id)
    assert (run.passed, run.failed, run.errored) == (8, 8, 0), {
        k: r["error"] for k, r in results.items() if r["error"]
    }
    assert {r["attempts"] for r in results.values()} == {1}
    verdict = results["t1"]["metrics"][0]
    assert (verdict["type"], verdict["passed"], verdict["score"]) == ("llm_judge", True, 1.0)
    assert results["t0"]["metrics"][0]["score"] == 0.0
    # the 429s were honoured (4 answered, each call made again) and the judge's
    # max_concurrency held across the worker's threads and loop
    assert stats["answered_429"] == 4 and stats["calls"] == 16 + 4
    assert stats["peak_in_flight"] <= 2
    [summary] = metric_summary(run_id)
    assert (summary.name, summary.judged, summary.passed, summary.mean_score) == (
        "judge",
        16,
        8,
        0.5,
    )
    # and the key never reached the database: the stored test holds the placeholder
    assert "k-123" not in repr(results)


@pytest.mark.slow
def test_a_judge_answer_that_does_not_parse_is_retried_then_the_tests_error(workers, database_url):
    workers.start(processes=1, threads=2, modules=METRIC_MODULES)
    with FakeJudge() as judge:
        tests = [
            {"id": "bad", "prompt": "Paris", "metrics": [judge_metric(judge.url, "[garbage]")]},
            {"id": "good", "prompt": "Paris", "metrics": [judge_metric(judge.url)]},
        ]
        run_id = launch_test_run(
            tests,
            executor="tests.support.targets:echo",
            options={"max_retries": 1, "min_backoff_ms": 10, "max_backoff_ms": 20},
        )
        run = wait_finished(run_id, timeout=60)
    results = results_by_id(run_id)
    assert (run.passed, run.errored) == (1, 1)
    bad = results["bad"]
    assert bad["status"] == "error" and bad["attempts"] == 2
    assert bad["error"].startswith("llm_judge 'judge': the answer is not a JSON object")
    assert "the judge said: 'I think this answer is pretty good overall!'" in bad["error"]
    assert results["good"]["attempts"] == 1
