"""Scores, thresholds and your own python metrics: evaluated on worker threads and on the
worker's event loop, refused at submission when malformed, summarised per run."""

from __future__ import annotations

import asyncio
import json
import math
import re
import textwrap

import pytest

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.execution.attempt import Execution
from rhesis_pipeline.execution.metrics import (
    MetricError,
    UnlimitedCalls,
    evaluate,
    evaluate_async,
    evaluate_one,
)
from rhesis_pipeline.runs.submit import launch_test_run

from .support import cli
from .support.metrics import METRIC_MODULES
from .support.runs import results_by_id, scalar, wait_finished

M = "tests.support.metrics"


def ex(output, duration_ms=12.0):
    return Execution("passed", output=output, document=output, duration_ms=duration_ms)


def py(fn, **params):
    return {"type": "python", "target": f"{M}:{fn}", **params}


# -- verdicts and scores (on this thread and on an event loop) ------------------------------


def test_builtin_checks_score_one_or_zero_and_a_threshold_decides():
    ok = evaluate_one({"type": "contains", "value": "par"}, ex("Paris"))
    assert (ok["passed"], ok["score"], ok["threshold"]) == (True, 1.0, None)
    no = evaluate_one({"type": "contains", "value": "rome"}, ex("Paris"))
    assert (no["passed"], no["score"]) == (False, 0.0)
    lenient = evaluate_one({"type": "contains", "value": "rome", "threshold": 0}, ex("Paris"))
    assert (lenient["passed"], lenient["score"], lenient["threshold"]) == (True, 0.0, 0)


@pytest.mark.parametrize(
    ("metric", "output", "expected"),
    [
        (py("is_long"), "long enough", (True, 1.0, None, "returned True")),
        (py("is_long", min_chars=50), "short", (False, 0.0, None, "returned False")),
        (py("length_score", full=10), "12345", (True, 0.5, 0.5, "score 0.5 >= threshold 0.5")),
        (
            py("length_score", full=10, threshold=0.8),
            "1234567",
            (False, 0.7, 0.8, "score 0.7 < threshold 0.8"),
        ),
        (py("graded"), "x", (True, 1.0, 0.5, "graded 1.0 (latency True, status None)")),
    ],
)
def test_a_python_metric_returns_a_bool_a_score_or_a_mapping(metric, output, expected):
    verdict = evaluate_one(metric, ex(output), {"id": "t"})
    assert (verdict["passed"], verdict["score"], verdict["threshold"], verdict["reason"]) == (
        expected
    )
    assert verdict["type"] == "python" and verdict["name"] == "python"


def test_a_mapping_with_a_threshold_is_decided_by_its_score():
    passed, verdicts = evaluate([py("graded", name="grade", threshold=0.9)], ex("x"),
                                {"id": "t", "grade": 0.85})  # fmt: skip
    assert not passed
    assert verdicts[0] | {"reason": ""} == {"type": "python", "name": "grade", "passed": False,
                                         "reason": "", "score": 0.85, "threshold": 0.9}  # fmt: skip


def test_an_async_metric_is_awaited_on_a_thread_and_on_a_loop():
    on_thread = evaluate_one(py("async_grade"), ex("x"), {"id": "t", "grade": 0.3})
    assert (on_thread["passed"], on_thread["score"], on_thread["reason"]) == (True, 0.3, "async")

    async def on_loop():
        calls = UnlimitedCalls()
        try:
            return await evaluate_async([py("async_grade"), py("is_long")], ex("long answer"),
                                        {"id": "t"}, calls)  # fmt: skip
        finally:
            await calls.close()

    passed, verdicts = asyncio.run(on_loop())
    assert passed and [v["score"] for v in verdicts] == [0.25, 1.0]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a string", "returned 'a string': a score must be a number in [0, 1]"),
        ("nan", "returned nan: a score must be a number in [0, 1]"),
        (1.5, "returned 1.5: a score must be a number in [0, 1]"),
        (None, "returned None: a score must be a number in [0, 1]"),
        ({"score": 2}, "returned {'score': 2}: a score must be a number in [0, 1]"),
        ({"passed": "yes"}, "returned passed='yes': passed must be true or false"),
        ({"verdict": True}, "a mapping has passed, score and reason"),
    ],
)
def test_what_is_not_a_verdict_is_an_error_naming_the_metric(value, fragment):
    with pytest.raises(MetricError) as caught:
        evaluate_one(py("returns_param", name="mine", value=value), ex("x"))
    assert str(caught.value).startswith("metric 'mine' ") and fragment in str(caught.value)


def test_an_exception_in_a_metric_is_an_error_naming_it():
    with pytest.raises(
        MetricError, match=r"^metric 'python' raised ValueError: the metric's own bug$"
    ):
        evaluate_one(py("broken"), ex("x"))


# -- refused at submission ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ({"type": "contains", "value": "x", "threshold": 1.5},
         "tests[1].metrics[0].threshold: 1.5 is not a number in [0, 1]"),
        ({"type": "contains", "value": "x", "threshold": math.nan},
         "tests[1].metrics[0].threshold: nan is not a number in [0, 1]"),
        ({"type": "python", "target": "no_such_module:fn"},
         "tests[1].metrics[0].target: 'no_such_module:fn': cannot import module"),
        ({"type": "python", "target": "not a target"},
         "tests[1].metrics[0].target: 'not a target' must be 'module.path:function'"),
    ],
)  # fmt: skip
def test_launch_refuses_bad_metrics_and_stores_nothing(database_url, metric, fragment):
    tests = [{"id": "a"}, {"id": "b", "metrics": [metric]}]
    with pytest.raises(InvalidSubmission) as caught:
        launch_test_run(tests, executor="tests.support.targets:echo")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0


SUITE = """
name: scored
endpoint: {{type: python, target: "tests.support.targets:echo"}}
tests:
  - id: one
    prompt: hello
    metrics: [{metric}]
"""


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ("{type: contains, value: x, threshold: 1.5}",
         "tests[0].metrics[0].threshold: 1.5 is not a number in [0, 1]; write a score"),
        ("{type: python, target: 'nowhere.at_all:fn'}",
         "tests[0].metrics[0].target: 'nowhere.at_all:fn': cannot import module 'nowhere.at_all'"),
        ("{type: contains, value: x, threshold: high}",
         "tests[0].metrics[0].threshold: 'high' is not of type 'number'"),
    ],
)  # fmt: skip
def test_the_cli_refuses_a_bad_metric_with_one_line_and_exit_2(database_url, tmp_path, metric,
                                                                fragment):  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE.format(metric=metric)))
    out = cli.run("rhesis-pipeline", "run", str(path), env={"DATABASE_URL": database_url})
    assert out.returncode == 2, out.stdout + out.stderr
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0


# -- on real workers: threads, the event loop, the summary -------------------------------------

SCORED_TESTS = [
    {"id": "bool", "prompt": "a long answer", "metrics": [py("is_long", name="long")]},
    {"id": "score", "prompt": "12345", "metrics": [py("length_score", name="length", full=10)]},
    {"id": "map", "prompt": "x", "grade": 0.2,
     "metrics": [py("graded", name="grade", threshold=0.5)]},
    {"id": "async", "prompt": "x", "grade": 0.75, "metrics": [py("async_grade", name="async")]},
    {"id": "raises", "prompt": "x", "metrics": [py("broken", name="bug")]},
    {"id": "string", "prompt": "x", "metrics": [py("returns_param", name="str", value="no")]},
    {"id": "nan", "prompt": "x", "metrics": [py("returns_param", name="nan", value="nan")]},
    {"id": "big", "prompt": "x", "metrics": [py("returns_param", name="big", value=1.5)]},
    {"id": "check", "prompt": "hello", "metrics": [{"type": "contains", "value": "hello"},
                                                  py("length_score", name="length", full=10)]},
]  # fmt: skip

ERRORS = {
    "raises": "metric 'bug' raised ValueError: the metric's own bug",
    "string": "metric 'str' returned 'no': a score must be a number in [0, 1]",
    "nan": "metric 'nan' returned nan: a score must be a number in [0, 1]",
    "big": "metric 'big' returned 1.5: a score must be a number in [0, 1]",
}


def _check_scored_run(run_id: str, database_url: str) -> None:
    run = wait_finished(run_id)
    results = results_by_id(run_id)
    assert {k: r["status"] for k, r in results.items()} == {
        "bool": "passed", "score": "passed", "map": "failed", "async": "passed",
        "raises": "error", "string": "error", "nan": "error", "big": "error", "check": "passed",
    }  # fmt: skip
    assert {k: results[k]["error"] for k in ERRORS} == ERRORS
    assert {k: results[k]["attempts"] for k in ERRORS} == dict.fromkeys(ERRORS, 1)  # not retried
    assert results["map"]["metrics"][0] | {"reason": ""} == {
        "type": "python", "name": "grade", "passed": False, "reason": "", "score": 0.2,
        "threshold": 0.5,
    }  # fmt: skip
    assert (run.passed, run.failed, run.errored) == (4, 1, 4)
    shown = cli.run("rhesis-pipeline", "show", run_id, "--json", env={"DATABASE_URL": database_url})
    summary = {m["name"]: m for m in json.loads(shown.stdout)["metrics"]}
    assert set(summary) == {"long", "length", "grade", "async", "contains"}
    assert summary["length"]["mean_score"] == pytest.approx(0.5)  # 5/10 twice
    assert (summary["length"]["judged"], summary["length"]["pass_rate"]) == (2, 1.0)
    assert summary["grade"]["mean_score"] == pytest.approx(0.2)
    assert summary["grade"]["pass_rate"] == 0.0
    assert summary["async"]["mean_score"] == pytest.approx(0.75)
    text = cli.run("rhesis-pipeline", "show", run_id, env={"DATABASE_URL": database_url}).stdout
    assert "METRIC" in text and "MEAN SCORE" in text
    assert re.search(r"\nasync +python +100% \(1/1\) +0\.750\n", text), text


@pytest.mark.slow
def test_python_metrics_on_worker_threads(workers, database_url):
    # Given a python target (it runs on worker threads) and every kind of python metric
    workers.start(processes=1, threads=4, modules=METRIC_MODULES)
    run_id = launch_test_run(SCORED_TESTS, executor="tests.support.targets:echo",
                             options={"max_retries": 2, "min_backoff_ms": 10})  # fmt: skip
    # Then each verdict, score and error is stored, and the summary has the mean scores
    _check_scored_run(run_id, database_url)


@pytest.mark.slow
def test_python_metrics_on_the_event_loop(workers, database_url):
    # Given an async def target: its tests, and their metrics, run on the worker's loop
    workers.start(processes=1, threads=2, modules=METRIC_MODULES)
    run_id = launch_test_run(SCORED_TESTS, executor=f"{M}:async_echo",
                             options={"max_retries": 2, "min_backoff_ms": 10})  # fmt: skip
    _check_scored_run(run_id, database_url)


# -- where the scores show: the dashboard's run page, /metrics ---------------------------------


def _scored_run() -> str:
    from rhesis_pipeline.runs.members import record_outcome

    run_id = launch_test_run([{"id": i} for i in range(3)], executor="tests.support.targets:echo")
    for i, (passed, score) in enumerate([(True, 0.9), (False, 0.3), (True, 0.6)]):
        verdict = {"type": "python", "name": "tone", "passed": passed, "reason": "r",
                   "score": score, "threshold": 0.5}  # fmt: skip
        record_outcome(run_id, str(i), status="passed" if passed else "failed", metrics=[verdict])
    return run_id


def test_a_finished_run_adds_its_scores_to_a_histogram_per_metric_name(database_url):
    from rhesis_pipeline.monitor.prometheus import exposition
    from rhesis_pipeline.runs.complete import finish_run

    finish_run(_scored_run())
    body = exposition()[0].decode()
    assert 'rhesis_metric_score_bucket{le="0.5",metric="tone"} 1.0' in body
    assert 'rhesis_metric_score_bucket{le="0.9",metric="tone"} 3.0' in body
    assert 'rhesis_metric_score_count{metric="tone"} 3.0' in body
    total = re.search(r'rhesis_metric_score_sum\{metric="tone"\} (\S+)', body)
    assert total and float(total.group(1)) == pytest.approx(1.8)
    # A tenant's scrape has no system totals (metric names of other tenants stay theirs).
    assert "rhesis_metric_score_count{" not in exposition("org-a")[0].decode()


def test_the_dashboards_run_page_shows_the_metrics_table(database_url):
    import httpx

    from .support.workers import REPO

    run_id = _scored_run()
    env = {"PYTHONPATH": str(REPO)}
    with cli.dashboard(database_url, env=env) as (_proc, url), httpx.Client(base_url=url) as http:
        page = http.get(f"/runs/{run_id}").text
    table = re.search(r'<table id="metrics">(.*?)</table>', page, re.S)
    assert table, page[:2000]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table.group(1))
    assert [c.strip() for c in cells] == ["tone", "python", "67% (2/3)", "0.600"]


def test_the_scored_example_suite_is_valid_and_its_metrics_score():
    from rhesis_pipeline.demo_target import reply
    from rhesis_pipeline.execution.python_target import interpret
    from rhesis_pipeline.suites.load import load_suite

    from .support.workers import REPO

    suite = load_suite(str(REPO / "examples" / "scored-suite.yaml"))
    test = suite.tests[0]
    passed, verdicts = evaluate(test["metrics"], interpret(reply(test)), test)
    assert passed and [v["name"] for v in verdicts] == ["contains", "keywords", "concise"]
    assert all(0.0 <= v["score"] <= 1.0 for v in verdicts)
