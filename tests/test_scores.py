"""Per-metric summaries of a run (runs.scores): pass rate and mean score, from the stored
verdicts, aggregated in Postgres."""

from __future__ import annotations

import pytest

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.scores import metric_summary
from rhesis_pipeline.runs.submit import launch_test_run

EXECUTOR = "tests.support.targets:echo"


def verdict(name: str, passed: bool, score: object = None) -> dict[str, object]:
    v: dict[str, object] = {"type": "python", "name": name, "passed": passed, "reason": "r"}
    if score is not None:
        v["score"] = score
    return v


def test_the_summary_counts_verdicts_and_averages_only_numeric_scores(database_url):
    run_id = launch_test_run([{"id": i} for i in range(4)], executor=EXECUTOR)
    record_outcome(run_id, "0", status="passed", metrics=[verdict("tone", True, 0.9)])
    record_outcome(
        run_id, "1", status="failed", metrics=[verdict("tone", False, 0.2), verdict("len", True)]
    )
    record_outcome(run_id, "2", status="error", metrics=None)
    # A verdict without a score, and one whose score is JSON null: pass rate only.
    record_outcome(
        run_id, "3", status="passed", metrics=[verdict("tone", True), verdict("len", True)]
    )

    summary = {m.name: m for m in metric_summary(run_id)}
    assert set(summary) == {"len", "tone"}
    tone = summary["tone"]
    assert (tone.judged, tone.passed, tone.scored) == (3, 2, 2)
    assert tone.mean_score == pytest.approx(0.55)
    assert tone.pass_rate == pytest.approx(2 / 3)
    assert summary["len"].mean_score is None and summary["len"].pass_rate == 1.0
    assert summary["len"].as_dict()["pass_rate"] == 1.0


def test_a_run_without_metrics_has_an_empty_summary_and_other_tenants_none(database_url):
    run_id = launch_test_run([{"id": 1}], executor=EXECUTOR, organization_id="org-a")
    assert metric_summary(run_id) == []
    assert metric_summary(run_id, organization_id="org-a") == []
    with pytest.raises(RunNotFound):
        metric_summary(run_id, organization_id="org-b")
