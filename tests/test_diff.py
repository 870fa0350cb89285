"""Comparing two runs (``rhesis-pipeline diff``, runs.diff, the dashboard's "compare
with…"): regressions, fixes, other changes, tests only in one run and per-metric changes,
computed in Postgres and streamed; exit 1 only when a test regressed, 2 for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import pipeline
from rhesis_pipeline.dashboard.app import create_app
from rhesis_pipeline.dashboard.state import DashboardConfig
from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs.diff import Change, compare, iter_changes, summarize
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support import cli
from .support.asgi import asgi_client

EXECUTOR = "tests.support.targets:echo"
SUITE = [f"t{i:04d}" for i in range(1000)]
#: The suite's changes from run A to run B.
REGRESSED = {f"t{i:04d}" for i in range(100, 1000, 90)}  # 10 tests: passed, then not
FIXED = {f"t{i:04d}" for i in range(5, 50, 9)}  # 5 tests: failed or errored, then passed
ONLY_A = {"t0997", "t0998", "t0999"}  # dropped from the suite before run B
ONLY_B = {"new-1", "new-2"}  # added before run B
#: Tests that failed in both runs: no change.
STILL_FAILING = {f"t{i:04d}" for i in range(60, 70)}


def tone(passed: bool, score: float) -> list[dict[str, object]]:
    return [{"type": "python", "name": "tone", "passed": passed, "reason": f"score {score}",
             "score": score, "threshold": 0.5}]  # fmt: skip


def store(run_id: str, outcomes: dict[str, str]) -> None:
    """Record each test's outcome (status) as a worker would, 16 at a time (the outcome
    writer commits concurrent outcomes together)."""

    def one(item: tuple[str, str]) -> None:
        test_id, status = item
        passed = status == "passed"
        record_outcome(
            run_id,
            test_id,
            status=status,
            metrics=tone(passed, 0.9 if passed else 0.2),
            error="HTTP 500: upstream down" if status == "error" else None,
            attempts=1,
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, outcomes.items()))


def a_status(test_id: str) -> str:
    if test_id in FIXED:
        return "error" if test_id == min(FIXED) else "failed"
    return "failed" if test_id in STILL_FAILING else "passed"


def b_status(test_id: str) -> str:
    if test_id in REGRESSED:
        return "error" if test_id == min(REGRESSED) else "failed"
    return "failed" if test_id in STILL_FAILING else "passed"


def two_runs(name: str = "nightly", org: str | None = None) -> tuple[str, str]:
    """Run A of the 1,000-test suite, then run B of it without 3 tests and with 2 new."""
    tests_a = SUITE
    tests_b = [t for t in SUITE if t not in ONLY_A] + sorted(ONLY_B)
    run_a = launch_test_run([{"id": t} for t in tests_a], executor=EXECUTOR, name=name,
                            organization_id=org)  # fmt: skip
    store(run_a, {t: a_status(t) for t in tests_a})
    run_b = launch_test_run([{"id": t} for t in tests_b], executor=EXECUTOR, name=name,
                            organization_id=org)  # fmt: skip
    store(run_b, {t: b_status(t) for t in tests_b})
    return run_a, run_b


@pytest.fixture
def runs(database_url) -> tuple[str, str]:
    return two_runs()


def test_the_diff_lists_exactly_the_regressions_fixes_and_tests_of_one_run(runs):
    run_a, run_b = runs
    by_change: dict[Change, set[str]] = {c: set() for c in Change}
    for test in iter_changes(run_a, run_b, batch_size=7):
        by_change[test.change].add(test.test_id)
    assert by_change == {
        Change.REGRESSION: REGRESSED,
        Change.FIX: FIXED,
        Change.CHANGED: set(),
        Change.ONLY_IN_A: ONLY_A,
        Change.ONLY_IN_B: ONLY_B,
    }
    digest = summarize(run_a, run_b, shown=4)
    assert digest.regressions == 10 and digest.more(Change.REGRESSION) == 6
    first = digest.tests[Change.REGRESSION][0]  # in suite order: t0100 errored in B
    assert (first.test_id, first.a.status, first.b.status) == ("t0100", "passed", "error")
    assert first.b.reason == "HTTP 500: upstream down"
    # Per metric: 985 of 1,000 passed in A (score 0.9, else 0.2), 979 of 999 in B.
    (metric,) = compare(run_a, run_b).metrics
    assert metric.name == "tone" and metric.type == "python"
    assert metric.pass_rate_a == pytest.approx(985 / 1000)
    assert metric.pass_rate_b == pytest.approx(979 / 999)
    assert metric.mean_score_change == pytest.approx(
        (979 * 0.9 + 20 * 0.2) / 999 - (985 * 0.9 + 15 * 0.2) / 1000
    )


def test_the_cli_lists_them_and_exits_1_and_its_json_has_every_test(database_url, runs):
    run_a, run_b = runs
    # Given two runs whose B regressed, when CI runs the command, then exit 1 and the list.
    done = cli.run("rhesis-pipeline", "diff", run_a[:8], run_b, env={"DATABASE_URL": database_url})
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "B against A: 10 regressions, 5 fixes, 0 other changes, 3 only in A, 2 only in B" in out
    regressions = out.split("Regressions (passed in A, failed or error in B): 10")[1]
    regressions = regressions.split("Fixes")[0]
    assert set(re.findall(r"^  (t\d{4}) ", regressions, re.M)) == REGRESSED
    assert "Traceback" not in done.stderr

    result = CliRunner().invoke(pipeline.main, ["diff", run_a, run_b, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["counts"] == {"regression": 10, "fix": 5, "changed": 0, "only_in_a": 3,
                              "only_in_b": 2}  # fmt: skip
    assert data["regressions"] == 10
    assert {t["test_id"] for t in data["tests"] if t["change"] == "regression"} == REGRESSED
    assert {t["test_id"] for t in data["tests"] if t["change"] == "only_in_b"} == ONLY_B
    assert data["run_a"]["run_id"] == run_a and data["run_b"]["total"] == 999
    (tone_change,) = data["metrics"]
    assert tone_change["name"] == "tone" and tone_change["pass_rate_change"] < 0


def test_no_regression_exits_0_and_other_changes_are_not_regressions(database_url):
    run_a = launch_test_run([{"id": i} for i in range(30)], executor=EXECUTOR, name="x")
    run_b = launch_test_run([{"id": i} for i in range(30)], executor=EXECUTOR, name="x")
    store(run_a, {str(i): "passed" if i >= 25 else "failed" for i in range(30)})
    # Every test fixed but 3 that passed and were cancelled, lost, or failed <-> errored.
    outcomes_b = {str(i): "passed" for i in range(30)}
    outcomes_b |= {"0": "error", "25": "cancelled", "26": "lost"}
    store(run_b, outcomes_b)
    result = CliRunner().invoke(pipeline.main, ["diff", run_a, run_b])
    assert result.exit_code == 0, result.output
    assert "0 regressions, 24 fixes, 3 other changes, 0 only in A, 0 only in B" in result.stdout
    # The text lists 20 fixes and says where the rest are.
    assert "… and 4 more (--json lists every test)" in result.stdout
    changed = {t.test_id: (t.a.status, t.b.status) for t in iter_changes(run_a, run_b)
               if t.change is Change.CHANGED}  # fmt: skip
    assert changed == {"0": ("failed", "error"), "25": ("passed", "cancelled"),
                       "26": ("passed", "lost")}  # fmt: skip
    # The reverse comparison: 24 regressions.
    assert CliRunner().invoke(pipeline.main, ["diff", run_b, run_a]).exit_code == 1


def one_error_line(result) -> str:
    """The one line saying what is wrong (besides the database announcement)."""
    lines = [ln for ln in result.output.splitlines() if ln.strip() and "using database" not in ln]
    assert len(lines) == 1 and ": error: " in lines[0], result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(database_url):
    run_a = launch_test_run([{"id": 1}], executor=EXECUTOR, organization_id="acme")
    run_b = launch_test_run([{"id": 1}], executor=EXECUTOR, organization_id="globex")
    twins = ["7d87edb6-1a00-4000-8000-000000000001", "7d87edb6-2b00-4000-8000-000000000002"]
    for twin in twins:
        made = launch_test_run([{"id": 1}], executor=EXECUTOR)
        with db.begin() as conn:
            for table, column in (("test_runs", "id"), ("test_results", "run_id")):
                conn.execute(text(f"UPDATE rhesis.{table} SET {column} = :new WHERE {column} = :old"),
                             {"new": twin, "old": made})  # fmt: skip
    runner = CliRunner()
    unknown = runner.invoke(pipeline.main, ["diff", run_a, "ffffffff-0000-4000-8000-000000000000"])
    assert unknown.exit_code == 2
    assert "no test run with id ffffffff-0000-4000-8000-000000000000" in one_error_line(unknown)
    prefix = runner.invoke(pipeline.main, ["diff", "ffffffff", run_a])
    assert prefix.exit_code == 2 and "no test run with id ffffffff" in one_error_line(prefix)
    ambiguous = runner.invoke(pipeline.main, ["diff", "7d87edb6", run_a])
    assert ambiguous.exit_code == 2 and "is ambiguous" in one_error_line(ambiguous)
    malformed = runner.invoke(pipeline.main, ["diff", run_a, "nope"])
    assert malformed.exit_code == 2 and "is not a run id" in one_error_line(malformed)
    # Runs of two tenants, read as one of them: the other's run is not there.
    tenants = runner.invoke(pipeline.main, ["diff", run_a, run_b, "--org", "acme"])
    assert tenants.exit_code == 2
    assert f"no test run with id {run_b} for organization acme" in one_error_line(tenants)
    assert runner.invoke(pipeline.main, ["diff", run_a, run_a, "--org", "acme"]).exit_code == 0
    with pytest.raises(RunNotFound):
        compare(run_a, run_b, organization_id="globex")


def test_the_dashboard_compares_with_the_previous_run_of_the_name_or_the_one_asked(runs):
    run_a, run_b = runs
    other = launch_test_run([{"id": "t0001"}], executor=EXECUTOR, name="other")
    with asgi_client(create_app(DashboardConfig())) as http:
        page = http.get(f"/runs/{run_b}")
        assert page.status_code == 200
        assert f'action="/runs/{run_b}/compare"' in page.text
        # Default: the previous run of the same name (run A).
        compared = http.get(f"/runs/{run_b[:8]}/compare")
        assert compared.status_code == 200, compared.text[:500]
        body = compared.text
        assert f"/runs/{run_a}" in body
        section = body.split('id="regression"')[1].split("</table>")[0]
        assert set(re.findall(r"<td>(t\d{4})</td>", section)) == REGRESSED
        fixes = body.split('id="fix"')[1].split("</table>")[0]
        assert set(re.findall(r"<td>(t\d{4})</td>", fixes)) == FIXED
        assert "10 regressions" in body and "tone" in body
        # Another run, picked in the form.
        picked = http.get(f"/runs/{run_b}/compare", params={"with": other})
        assert picked.status_code == 200 and "998 only in B" in picked.text
        # The first run of a name has none before it: the page says so.
        first = http.get(f"/runs/{run_a}/compare")
        assert first.status_code == 200 and "no earlier run named" in first.text
        bad = http.get(f"/runs/{run_b}/compare", params={"with": "nope"})
        assert bad.status_code == 400 and "is not a run id" in bad.text
        gone = http.get(f"/runs/{run_b}/compare", params={"with": "ffffffff"})
        assert gone.status_code == 404


def test_the_compare_page_escapes_reasons_and_shows_a_tenant_only_its_runs(database_url):
    base = launch_test_run([{"id": "t1"}], executor=EXECUTOR, name="n", organization_id="acme")
    record_outcome(base, "t1", status="passed")
    worse = launch_test_run([{"id": "t1"}], executor=EXECUTOR, name="n", organization_id="acme")
    record_outcome(worse, "t1", status="error", error="<script>alert(1)</script>")
    other = launch_test_run([{"id": "t1"}], executor=EXECUTOR, name="n", organization_id="globex")
    with asgi_client(create_app(DashboardConfig(organization="acme"))) as http:
        page = http.get(f"/runs/{worse}/compare")
        assert page.status_code == 200 and "1 regression," in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert" not in page.text
        # Another organization's run is not there, as a baseline or as the run compared.
        assert http.get(f"/runs/{worse}/compare", params={"with": other}).status_code == 404
        assert http.get(f"/runs/{other}/compare").status_code == 404
    with asgi_client(create_app(DashboardConfig(organization="globex"))) as http:
        # The previous run named "n" is acme's: globex's run has none before it.
        page = http.get(f"/runs/{other}/compare")
        assert page.status_code == 200 and "no earlier run named" in page.text


def test_a_reader_that_stops_early_gets_no_traceback(database_url):
    # 400 regressions: more JSON than a pipe holds, so the command writes after `head` left;
    # click turns the broken pipe into exit 1 (a partial read is no pass).
    run_a = launch_test_run([{"id": i} for i in range(400)], executor=EXECUTOR)
    run_b = launch_test_run([{"id": i} for i in range(400)], executor=EXECUTOR)
    store(run_a, {str(i): "passed" for i in range(400)})
    store(run_b, {str(i): "failed" for i in range(400)})
    command = f"'{cli.script('rhesis-pipeline')}' diff {run_a} {run_b} --json | head -c 100"
    done = subprocess.run(
        ["bash", "-c", command + " >/dev/null; echo ${PIPESTATUS[0]}"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "1"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
