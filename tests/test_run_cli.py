"""`rhesis-pipeline run/show/runs/demo` as real subprocesses, with real workers."""

import json
import re
import textwrap

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import pipeline
from rhesis_pipeline.demo_target import ChatTarget

from .support import cli
from .support.runs import scalar

HTTP_SUITE = """
name: http checks
endpoint:
  type: http
  url: {url}
  body: {{messages: [{{role: user, content: "{{{{prompt}}}}"}}]}}
  response_path: "$.choices[0].message.content"
  timeout_s: 5
defaults: {{max_retries: 3, min_backoff_ms: 20, max_backoff_ms: 50}}
tests:
  - {{id: paris, prompt: "What is the capital of France?", metrics: [{{type: contains, value: Paris}}]}}
  - {{id: four, prompt: "What is 2 + 2?", metrics: [{{type: regex, pattern: '\\b4\\b'}}, {{type: max_latency_ms, value: 5000}}]}}
  - {{id: rome, prompt: "What is the capital of Italy?", metrics: [{{type: contains, value: Rome}}]}}
  - {{id: flaky, prompt: "[flaky] What is the capital of Japan?", metrics: [{{type: contains, value: Tokyo}}]}}
  - {{id: missing, prompt: "[missing] hello"}}
"""


def write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.slow
def test_http_suite_verdicts_attempts_exit_code_and_json(workers, database_url, tmp_path):
    workers.start(processes=1, threads=4)
    with ChatTarget() as target:
        suite = write(tmp_path, HTTP_SUITE.format(url=target.url))
        out = cli.run(
            "rhesis-pipeline", "run", suite, "--wait", "--json", env={"DATABASE_URL": database_url}
        )
        assert target.requests["[flaky] What is the capital of Japan?"] == 3

    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {
        "run_id",
        "status",
        "total",
        "passed",
        "failed",
        "errored",
        "duration_s",
        "results",
    }
    assert (data["status"], data["total"], data["passed"], data["failed"], data["errored"]) == (
        "PARTIAL",
        5,
        3,
        1,
        1,
    )
    by_id = {r["test_id"]: r for r in data["results"]}
    assert [r["test_id"] for r in data["results"]] == ["paris", "four", "rome", "flaky", "missing"]
    assert set(by_id["paris"]) == {"test_id", "status", "error", "metrics", "attempts"}

    assert by_id["paris"]["status"] == "passed" and by_id["paris"]["attempts"] == 1
    assert by_id["paris"]["metrics"] == [
        {
            "type": "contains",
            "name": "contains",
            "passed": True,
            "reason": "answer contains 'Paris'",
            "score": 1.0,
            "threshold": None,
        }
    ]
    assert by_id["four"]["status"] == "passed"
    assert [m["passed"] for m in by_id["four"]["metrics"]] == [True, True]
    assert by_id["rome"]["status"] == "failed" and by_id["rome"]["error"] is None
    assert by_id["rome"]["metrics"][0]["reason"] == (
        "answer does not contain 'Rome': 'You asked: What is the capital of Italy?'"
    )
    # 500, 500, then 200: retried with backoff and passed on the third attempt.
    assert (by_id["flaky"]["status"], by_id["flaky"]["attempts"]) == ("passed", 3)
    # 404: not retried, an error with the status and an excerpt of the body.
    assert (by_id["missing"]["status"], by_id["missing"]["attempts"]) == ("error", 1)
    assert by_id["missing"]["error"] == (
        'HTTP 404 Not Found: {"error": "model \'demo-1\' not found"}'
    )
    assert by_id["missing"]["metrics"] is None

    # show gives the same fields; runs lists it.
    shown = cli.run(
        "rhesis-pipeline", "show", data["run_id"], "--json", env={"DATABASE_URL": database_url}
    )
    assert json.loads(shown.stdout)["results"] == data["results"]
    listed = cli.run("rhesis-pipeline", "runs", "--json", env={"DATABASE_URL": database_url})
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [data["run_id"]]
    text = cli.run("rhesis-pipeline", "show", data["run_id"], env={"DATABASE_URL": database_url})
    assert "PARTIAL" in text.stdout and "missing  error" in text.stdout


@pytest.mark.slow
def test_python_suite_of_1000_tests_completes_with_progress(workers, database_url, tmp_path):
    workers.start(processes=2, threads=8)
    suite = {
        "name": "thousand",
        "endpoint": {"type": "python", "target": "tests.support.targets:echo"},
        "tests": [
            {"id": i, "prompt": f"p{i}", "metrics": [{"type": "contains", "value": f"p{i}"}]}
            for i in range(1000)
        ],
    }
    path = write(tmp_path, json.dumps(suite), "thousand.json")
    out = cli.run("rhesis-pipeline", "run", path, "--wait", env={"DATABASE_URL": database_url})
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        "COMPLETED" in out.stdout and "1000 tests: 1000 passed, 0 failed, 0 errored" in out.stdout
    )
    assert "1000/1000 100.0%" in out.stderr  # the final progress line
    assert "/s  ETA" in out.stderr


def test_timeout_exits_1_and_the_run_goes_on(database_url, tmp_path):
    suite = {
        "name": "never",
        "endpoint": {"type": "python", "target": "tests.support.targets:noop"},
        "tests": [{"id": "a"}],
    }
    out = cli.run(
        "rhesis-pipeline",
        "run",
        write(tmp_path, json.dumps(suite), "n.json"),
        "--wait",
        "--timeout",
        "0.5",
        env={"DATABASE_URL": database_url},
    )
    assert out.returncode == 1
    assert "--timeout of 0.5s expired" in out.stderr
    assert scalar("SELECT status FROM rhesis.test_runs") == "QUEUED"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("name: x\ntests: [{id: a}]\n", "'endpoint' is a required property"),
        (
            "name: x\nendpoint: {type: python, target: 'tests.support.targets:noop'}\n"
            "tests: [{id: a, metrics: [{type: vibes}]}]\n",
            "'vibes' is not allowed",
        ),
        (
            "name: x\nendpoint: {type: python, target: 'tests.support.targets:noop'}\n"
            "tests: [{id: a}, {id: a}]\n",
            "tests[1].id: 'a' duplicates tests[0].id",
        ),
        (
            "name: x\nendpoint: {type: python, target: 'tests.support.targets:noop'}\n"
            "tests: [{id: a, metrics: [{type: regex, pattern: '*oops'}]}]\n",
            "is not a valid regular expression",
        ),
        (
            "name: x\nendpoint: {type: python, target: 'nowhere.at.all:fn'}\ntests: [{id: a}]\n",
            "cannot import module 'nowhere.at.all'",
        ),
        (
            "name: x\nendpoint: {type: http, url: 'localhost:8000/chat'}\ntests: [{id: a}]\n",
            "is not an absolute http(s) URL",
        ),
    ],
)
def test_malformed_suite_exits_2_names_the_problem_and_enqueues_nothing(
    database_url, tmp_path, text, fragment
):
    out = cli.run(
        "rhesis-pipeline",
        "run",
        write(tmp_path, text),
        "--wait",
        env={"DATABASE_URL": database_url},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 0
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0


def test_show_an_unknown_run(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(pipeline.main, ["show", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 2 and "no test run with id" in result.output
    bad = CliRunner().invoke(pipeline.main, ["show", "nope"])
    assert bad.exit_code == 2 and "is not a run id" in bad.output


@pytest.mark.slow
def test_demo_runs_as_designed(database_url):
    out = cli.run("rhesis-pipeline", "demo", env={"DATABASE_URL": database_url}, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo ran as designed" in out.stderr
    assert "model-missing  error" in out.stdout
    assert scalar("SELECT count(*) FROM rhesis.test_runs WHERE status = 'PARTIAL'") == 1
    # The scored metrics: a python metric and the local fake LLM judge, in the summary table
    assert re.search(r"^judge +llm_judge +67% \(2/3\) +0\.833$", out.stdout, re.M), out.stdout
    assert re.search(r"^keywords +python +100% \(2/2\) +1\.000$", out.stdout, re.M)
    assert "sky            failed  1         judge: the answer lacks 'Rayleigh'" in out.stdout
