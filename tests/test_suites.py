"""Suite files: validation errors name the file, the path, the problem and what is allowed."""

import json
import textwrap

import pytest

from rhesis_pipeline.errors import InvalidSubmission
from rhesis_pipeline.runs.options import MAX_TIME_LIMIT_MS, RunOptions
from rhesis_pipeline.suites.load import load_suite
from rhesis_pipeline.suites.schema import InvalidSuite

GOOD = """
name: ok
endpoint: {type: http, url: "http://127.0.0.1:9/v1/chat", body: {q: "{{prompt}}"},
           response_path: "$.a"}
defaults: {max_retries: 1, min_backoff_ms: 10, max_backoff_ms: 20, time_limit_s: 2}
tests:
  - {id: a, prompt: hi, metrics: [{type: contains, value: x}]}
  - {id: 2, prompt: yo}
"""


def write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_suite_loads(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.name == "ok"
    assert [t["id"] for t in suite.tests] == ["a", "2"]
    assert suite.options == {
        "max_retries": 1,
        "min_backoff_ms": 10,
        "max_backoff_ms": 20,
        "time_limit_ms": 2000,
    }
    assert suite.endpoint["method"] == "POST" and suite.endpoint["timeout_s"] == 30
    assert not {"max_concurrency", "requests_per_minute", "limit_key"} & set(suite.endpoint)


def test_an_endpoint_declares_its_limits_in_the_suite(tmp_path):
    # Issue #22's endpoint limits, declared in a suite file, reach the executor spec.
    suite = load_suite(
        write(
            tmp_path,
            """
            name: limited
            endpoint: {type: http, url: "http://127.0.0.1:9/", max_concurrency: 400,
                       requests_per_minute: 2400, limit_key: openai-key-1}
            tests: [{id: a, prompt: hi}]
            """,
        )
    )
    assert suite.endpoint["max_concurrency"] == 400
    assert suite.endpoint["requests_per_minute"] == 2400
    assert suite.endpoint["limit_key"] == "openai-key-1"


@pytest.mark.parametrize(
    ("limit", "fragment"),
    [
        ("max_concurrency: 0", "endpoint.max_concurrency: 0 is less than the minimum of 1"),
        ("requests_per_minute: 1.5", "endpoint.requests_per_minute: 1.5 is not of type"),
        ('limit_key: ""', "endpoint.limit_key"),
    ],
)
def test_bad_endpoint_limits_are_refused_by_name(tmp_path, limit, fragment):
    text = f"""
    name: limited
    endpoint: {{type: http, url: "http://127.0.0.1:9/", {limit}}}
    tests: [{{id: a}}]
    """
    with pytest.raises(InvalidSuite, match=fragment):
        load_suite(write(tmp_path, text))


def test_json_suites_load_too(tmp_path):
    data = {
        "name": "j",
        "endpoint": {"type": "python", "target": "tests.support.targets:noop"},
        "tests": [{"id": "x"}],
    }
    suite = load_suite(write(tmp_path, json.dumps(data), "s.json"))
    assert suite.endpoint == {"type": "python", "target": "tests.support.targets:noop"}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: [unclosed\n", ["not valid JSON or YAML", "line"]),
        ('{"name": "x",}', ["not valid JSON", "line 1"]),
        ("just words", ["a suite is a mapping"]),
        ("name: x\ntests: [{id: a}]\n", ["(top level): 'endpoint' is a required property"]),
        (
            GOOD.replace("type: contains", "type: sounds_good"),
            [
                "tests[0].metrics[0].type: 'sounds_good' is not allowed; use one of contains, "
                "not_contains, equals, regex, json_path_equals, max_latency_ms"
            ],
        ),
        (GOOD.replace("id: 2", "id: a"), ["tests[1].id: 'a' duplicates tests[0].id"]),
        (
            GOOD.replace("{type: contains, value: x}", "{type: regex, pattern: '(['}"),
            ["tests[0].metrics[0].pattern: '([' is not a valid regular expression"],
        ),
        (
            GOOD.replace('url: "http://127.0.0.1:9/v1/chat"', "url: 127.0.0.1:9/chat"),
            ["endpoint.url: '127.0.0.1:9/chat' is not an absolute http(s) URL"],
        ),
        (GOOD.replace("prompt: yo", "prompt: yo, colour: red"), []),  # extra test fields are fine
        (
            GOOD.replace("name: ok", "name: ok\nowner: me"),
            ["(top level): 'owner' was unexpected; allowed keys: defaults, endpoint, name, tests"],
        ),
        (
            GOOD.replace('response_path: "$.a"', 'response_pth: "$.a"'),
            ["endpoint: 'response_pth' was unexpected"],
        ),
        (
            GOOD.replace("{type: contains, value: x}", "{type: contains, valu: x}"),
            [
                "tests[0].metrics[0]: 'value' is a required property",
                "tests[0].metrics[0]: 'valu' was unexpected",
            ],
        ),
        (
            GOOD.replace("prompt: yo", "promptt: yo"),
            ["tests[1]: the endpoint uses {{prompt}}, which this test does not have"],
        ),
        (
            "name: p\nendpoint: {type: python, target: 'no.such.module:fn'}\ntests: [{id: a}]\n",
            ["endpoint.target: executor.target 'no.such.module:fn': cannot import module"],
        ),
        (
            "name: p\nendpoint: {type: smtp}\ntests: [{id: a}]\n",
            ["endpoint.type: 'smtp' is not allowed; use one of http, python"],
        ),
        (
            "name: p\nendpoint: {type: python, target: 'tests.support.targets:noop'}\ntests: []\n",
            ["tests: [] should be non-empty"],
        ),
    ],
)
def test_malformed_suites_are_refused_with_every_problem_named(tmp_path, text, fragments):
    path = write(tmp_path, text)
    if not fragments:
        load_suite(path)
        return
    with pytest.raises(InvalidSuite) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tmp_path):
    with pytest.raises(InvalidSuite, match="no such file"):
        load_suite(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        # Found by tests/test_fuzz.py: kinds that are not text crashed the lookup of a
        # type's schema; metrics that are not a list crashed the iteration.
        ("metric type", ["contains"], "tests[0].metrics[0].type"),
        ("endpoint type", ["python"], "endpoint.type"),
        ("metrics", 7, "tests[0].metrics"),
        ("metrics", {"type": "contains"}, "tests[0].metrics"),
    ],
)
def test_fields_of_the_wrong_kind_are_refused_by_name(tmp_path, field, value, fragment):
    suite = {
        "name": "x",
        "endpoint": {"type": "python", "target": "tests.support.targets:echo"},
        "tests": [{"id": "a", "metrics": [{"type": "contains", "value": "x"}]}],
    }
    if field == "metric type":
        suite["tests"][0]["metrics"][0]["type"] = value
    elif field == "endpoint type":
        suite["endpoint"]["type"] = value
    else:
        suite["tests"][0]["metrics"] = value
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(InvalidSuite) as refused:
        load_suite(path)
    assert fragment in str(refused.value)


PYTHON_SUITE = """
name: typos
endpoint: {type: python, target: "tests.support.targets:echo"}
tests:
  - {id: a, prompt: hi}
  - {id: b, prompt: hi}
  - {id: c, prompt: hi}
  - id: d
    prompt: hi
    %s
"""


@pytest.mark.parametrize(
    "line, problem",
    [
        (
            "metircs: [{type: contains, value: never}]",
            "tests[3]: unknown key 'metircs': did you mean 'metrics'? "
            "(put a data field of that name under vars)",
        ),
        ("Metrics: []", "tests[3]: unknown key 'Metrics': did you mean 'metrics'?"),
        ("metric: []", "tests[3]: unknown key 'metric': did you mean 'metrics'?"),
        ("ID: 4", "tests[3]: unknown key 'ID': did you mean 'id'?"),
        ("max_retires: 0", "tests[3]: unknown key 'max_retires': did you mean 'max_retries'?"),
        ("time_limit: 5", "tests[3]: unknown key 'time_limit': did you mean 'time_limit_s'?"),
        (
            "max_retries: 0",
            "tests[3]: 'max_retries' is a run option, not a test field: set it under defaults",
        ),
    ],
)
def test_a_misspelt_test_key_is_refused_with_one_line(tmp_path, line, problem):
    with pytest.raises(InvalidSuite) as refused:
        load_suite(write(tmp_path, PYTHON_SUITE % line))
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'suite.yaml'}: {problem}")
    assert "\n" not in message


@pytest.mark.parametrize(
    "line", ["expected: hello", "ip: 10.0.0.1", "metadata: {a: 1}", "vars: {metircs: 1, id: 2}"]
)
def test_data_fields_that_look_like_no_reserved_key_and_vars_are_taken(tmp_path, line):
    suite = load_suite(write(tmp_path, PYTHON_SUITE % line))
    key, _, _ = line.partition(":")
    assert key in suite.tests[3]


def test_a_near_miss_that_a_placeholder_uses_is_a_field(tmp_path):
    # Given: an endpoint that sends {{metric}} and {{topic}}; one test gives topic in vars.
    text = """
    name: used
    endpoint: {type: http, url: "http://127.0.0.1:9/x", body: {m: "{{metric}}", t: "{{topic}}"}}
    tests:
      - {id: a, metric: bleu, topic: x}
      - {id: b, metric: rouge, vars: {topic: y}}
    """
    suite = load_suite(write(tmp_path, text))
    assert [t.get("metric") for t in suite.tests] == ["bleu", "rouge"]

    from rhesis_pipeline.execution.http_endpoint import render

    assert render(suite.endpoint["body"], suite.tests[1]) == {"m": "rouge", "t": "y"}


def test_a_time_limit_beyond_the_longest_allowed_is_refused(tmp_path):
    # The longest time limit bounds a worker's shutdown (the Kubernetes grace period).
    assert RunOptions.parse({"time_limit_ms": MAX_TIME_LIMIT_MS}).time_limit_ms == 300_000
    with pytest.raises(InvalidSubmission, match=r"options\.time_limit_ms must be 1\.\.300000"):
        RunOptions.parse({"time_limit_ms": MAX_TIME_LIMIT_MS + 1})
    with pytest.raises(InvalidSuite, match="time_limit_s"):
        load_suite(write(tmp_path, GOOD.replace("time_limit_s: 2", "time_limit_s: 301")))
