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
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhesis_pipeline.runs import launch_test_run

from .support.runs import results_by_id, wait_finished

pytestmark = pytest.mark.slow

hostile_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=20),
    st.sampled_from(["\x00", "k\x00", "\ud800", "a\udfffb", "", "'; DROP TABLE x; --"]),
    st.integers(1_000_000, 1_100_000).map(lambda n: "x" * n),  # over the 1 MiB limit
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**5000, max_value=10**5000 + 1),  # too many digits for JSON
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
values = st.one_of(
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(hostile_text, st.integers()), children, max_size=4),
        ),
        max_leaves=12,
    ),
    st.integers(50, 400).map(lambda depth: functools.reduce(lambda a, _: [a], range(depth), 0)),
)
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
