"""Property-based tests (Hypothesis) of what a hostile user or target can produce.

Target outputs: whatever a target returns — random unicode with NUL and lone surrogates,
NaN, ±Infinity, huge integers, deep nesting, huge strings, odd keys — every test of the
run gets exactly one terminal outcome, the run finishes with one callback, and the
ordinary tests beside it pass with their outputs. A fixed number of examples keeps CI time
bounded; found counter-examples are kept as regression tests in tests/test_isolation.py.
"""

from __future__ import annotations

import base64
import functools
import os
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhesis_pipeline.runs.submit import launch_test_run

from .support.runs import results_by_id, wait_finished

short_hostile_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=20),
    st.sampled_from(["\x00", "k\x00", "\ud800", "a\udfffb", "", "'; DROP TABLE x; --"]),
)
hostile_text = st.one_of(
    short_hostile_text,
    st.integers(1_000_000, 1_100_000).map(lambda n: "x" * n),  # over the 1 MiB limit
)


def _values(text):
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**5000, max_value=10**5000 + 1),  # too many digits for JSON
        st.floats(allow_nan=True, allow_infinity=True),
        text,
    )
    return st.one_of(
        st.recursive(
            scalars,
            lambda children: st.one_of(
                st.lists(children, max_size=4),
                st.dictionaries(st.one_of(text, st.integers()), children, max_size=4),
            ),
            max_leaves=12,
        ),
        st.integers(50, 400).map(lambda depth: functools.reduce(lambda a, _: [a], range(depth), 0)),
    )


#: What a target may return (huge strings included).
values = _values(hostile_text)
#: What a suite file may hold (hostile, but small enough to read back in a report).
suite_values = _values(short_hostile_text)
outputs = st.one_of(
    values,
    st.fixed_dictionaries({"passed": st.booleans(), "output": values}),
    st.fixed_dictionaries({"passed": values, "output": values}),
)


def _blob(value) -> str:
    return base64.b64encode(pickle.dumps(value)).decode()


@pytest.fixture
def worker(workers):
    return workers.start(processes=1, threads=4)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(returned=st.lists(outputs, min_size=1, max_size=4))
def test_whatever_targets_return_every_test_ends_once_and_others_pass(worker, returned):
    tests = [{"id": f"fuzz{i}", "blob": _blob(v)} for i, v in enumerate(returned)]
    tests += [{"id": "ordinary-a", "blob": _blob({"output": "ok"})}]
    tests += [{"id": "ordinary-b", "blob": _blob(True)}]
    run_id = launch_test_run(
        tests, executor="tests.support.targets:from_blob", options={"max_retries": 0}
    )
    run = wait_finished(run_id, timeout=60)
    results = results_by_id(run_id)
    assert set(results) == {t["id"] for t in tests}
    assert all(r["status"] in ("passed", "failed", "error") for r in results.values())
    assert (results["ordinary-a"]["status"], results["ordinary-a"]["output"]) == ("passed", "ok")
    assert results["ordinary-b"]["status"] == "passed"
    for r in results.values():
        if r["status"] == "error":
            assert r["error"] and "\n" not in r["error"].strip()
    assert (run.done, run.total, run.collected_count) == (len(tests), len(tests), 1)


# -- suites ------------------------------------------------------------------------------

BASE_SUITE = {
    "name": "fuzzed",
    "endpoint": {"type": "python", "target": "tests.support.targets:echo"},
    "defaults": {"max_retries": 1, "min_backoff_ms": 10, "max_backoff_ms": 100},
    "tests": [{"id": "a", "prompt": "hello", "metrics": [{"type": "contains", "value": "he"}]}],
}
FIELDS = [
    ("name",),
    ("endpoint", "target"),
    ("endpoint", "type"),
    ("defaults", "max_retries"),
    ("defaults", "min_backoff_ms"),
    ("defaults", "time_limit_s"),
    ("tests", 0, "id"),
    ("tests", 0, "prompt"),
    ("tests", 0, "metrics", 0, "value"),
    ("tests", 0, "metrics", 0, "type"),
    ("tests",),
    ("extra",),
]


def _set(doc, path, value):
    """Replace the value at *path* (skipped when an earlier replacement removed the path)."""
    for key in path[:-1]:
        try:
            doc = doc[key]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if (isinstance(doc, dict) and isinstance(last, str)) or (
        isinstance(doc, list) and isinstance(last, int) and len(doc) > last
    ):
        doc[path[-1]] = value


@st.composite
def suite_texts(draw):
    """A suite file's text: the base suite with fields replaced by hostile values, as
    JSON (NaN and escapes such as \\u0000 or \\ud800 included) or YAML; or any text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
    doc = pickle.loads(pickle.dumps(BASE_SUITE))
    for path in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4)):
        _set(doc, path, draw(suite_values))
    if draw(st.booleans()):
        import json

        try:
            return json.dumps(doc)  # NaN/Infinity as JS literals, strings \u-escaped
        except (ValueError, TypeError, RecursionError):
            return "{}"
    import yaml

    try:
        return yaml.safe_dump(doc, allow_unicode=False)
    except (yaml.YAMLError, RecursionError, ValueError):
        return "name: x\n"


@settings(
    max_examples=int(os.environ.get("RHESIS_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@pytest.mark.slow
@given(text=suite_texts())
def test_a_suite_is_accepted_or_refused_with_a_clear_message(tmp_path_factory, text):
    """Whatever the file holds, loading it either gives a suite with tests or raises the
    project's error (the CLI prints it and exits 2): a first line naming the file and what
    is wrong, then one line per further problem — never another exception."""
    from rhesis_pipeline.errors import RhesisError
    from rhesis_pipeline.suites.load import load_suite

    path = tmp_path_factory.mktemp("suite") / "suite.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        suite = load_suite(path)
    except RhesisError as exc:
        lines = str(exc).splitlines()
        assert lines and lines[0].startswith(str(path)), lines
        assert all(line.strip() for line in lines) and "Traceback" not in str(exc)
    else:
        assert suite.tests  # accepted: a suite with tests
