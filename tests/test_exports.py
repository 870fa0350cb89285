"""The exports' writers (rhesis_pipeline.runs.export): JUnit XML that a JUnit schema and
junitparser accept, CSV that csv.reader reads back, JSONL whose lines parse — from runs
in a real Postgres, and from hostile text that must not break the file."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from junitparser import Error, Failure, Skipped

from rhesis_pipeline.runs.export import export_run, format_of
from rhesis_pipeline.runs.export import snapshot as snapshot_module
from rhesis_pipeline.runs.export.csv_out import guard_formula
from rhesis_pipeline.runs.export.files import OutputError
from rhesis_pipeline.runs.export.junit import write_junit, xml_text
from rhesis_pipeline.runs.export.snapshot import RunSnapshot, run_snapshot
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.record import Run

from .support.exports import mixed_run, read_junit, verdict


def export(run_id: str, fmt: str, organization_id: str | None = None) -> bytes:
    out = io.BytesIO()
    export_run(run_id, fmt, out, organization_id=organization_id)
    return out.getvalue()


def properties(case) -> dict[str, str]:
    return {p.name: p.value for p in case.properties()}


def test_junit_of_a_mixed_run_validates_and_reads_back_with_its_counts(database_url):
    run_id = mixed_run()
    suite = read_junit(export(run_id, "junit"))

    assert suite.name == "nightly evals"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (6, 1, 2, 2)
    cases = {c.name: c for c in suite}
    assert list(cases) == ["ok", "bad", "boom", "gone", "revoked", "waiting"]
    # The counts the suite states are the cases a consumer counts.
    kinds = [type(c.result[0]).__name__ if c.result else "passed" for c in suite]
    assert kinds == ["passed", "Failure", "Error", "Error", "Skipped", "Skipped"]

    (failure,) = cases["bad"].result
    assert isinstance(failure, Failure)
    assert failure.message == (
        "tone: rude (score 0.2, threshold 0.7); contains: answer lacks 'Paris'"
    )
    assert failure.text.splitlines() == ["tone: rude (score 0.2, threshold 0.7)",
                                         "contains: answer lacks 'Paris'"]  # fmt: skip
    (error,) = cases["boom"].result
    assert isinstance(error, Error) and error.message == "RuntimeError: boom"
    assert error.type == "error" and "Traceback" in error.text
    assert cases["gone"].result[0].type == "lost"
    assert isinstance(cases["revoked"].result[0], Skipped)
    assert "cancelled" in cases["revoked"].result[0].message
    assert "not finished" in cases["waiting"].result[0].message

    assert cases["bad"].time == 2.5 and cases["bad"].classname == "nightly evals"
    assert properties(cases["ok"]) == {"attempts": "1", "latency_ms": "120", "score.tone": "0.9"}
    assert properties(cases["bad"]) == {"attempts": "2", "latency_ms": "2500", "score.tone": "0.2"}
    assert cases["bad"].system_out == '{"answer": "Lyon"}'
    suite_props = {p.name: p.value for p in suite.properties()}
    assert suite_props["run_id"] == run_id and suite_props["status"] == "IN_PROGRESS"
    assert suite_props["metric.tone.mean_score"] == "0.55"
    assert suite_props["metric.contains.pass_rate"] == "0.5"
    assert "metric.contains.mean_score" not in suite_props  # old verdicts: no score


def test_csv_has_a_verdict_and_score_column_per_metric_and_reads_back(database_url):
    run_id = mixed_run()
    rows = list(csv.reader(io.StringIO(export(run_id, "csv").decode("utf-8"), newline="")))

    assert rows[0] == ["test_id", "status", "attempts", "duration_ms", "error",
                       "contains.passed", "contains.score", "tone.passed", "tone.score",
                       "output"]  # fmt: skip
    by_id = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert list(by_id) == ["ok", "bad", "boom", "gone", "revoked", "waiting"]
    assert by_id["ok"] | {} == {
        "test_id": "ok", "status": "passed", "attempts": "1", "duration_ms": "120",
        "error": "", "contains.passed": "true", "contains.score": "", "tone.passed": "true",
        "tone.score": "0.9", "output": "Paris",
    }  # fmt: skip
    assert (by_id["bad"]["tone.passed"], by_id["bad"]["tone.score"]) == ("false", "0.2")
    assert json.loads(by_id["bad"]["output"]) == {"answer": "Lyon"}
    assert by_id["boom"]["error"].endswith("RuntimeError: boom")
    assert by_id["waiting"]["status"] == "queued" and by_id["waiting"]["tone.passed"] == ""


def test_jsonl_is_the_full_result_per_line(database_url):
    run_id = mixed_run()
    lines = export(run_id, "jsonl").decode("utf-8").splitlines()
    results = [json.loads(line) for line in lines]
    assert [r["test_id"] for r in results] == ["ok", "bad", "boom", "gone", "revoked", "waiting"]
    first = results[0]
    assert set(first) == {"run_id", "test_id", "position", "status", "output", "metrics",
                          "error", "attempts", "duration_ms", "worker", "started_at",
                          "finished_at"}  # fmt: skip
    assert first["run_id"] == run_id and first["output"] == "Paris"
    assert first["metrics"][0] == verdict("tone", True, "polite", 0.9, 0.7)
    # Times are ISO 8601 with their zone.
    assert first["finished_at"].endswith("+00:00") and "T" in first["finished_at"]


def test_another_tenants_run_is_not_found_and_its_own_is(database_url):
    from rhesis_pipeline.errors import RunNotFound

    run_id = mixed_run(organization_id="org-a")
    assert read_junit(export(run_id, "junit", organization_id="org-a")).tests == 6
    for fmt in ("junit", "csv", "jsonl"):
        with pytest.raises(RunNotFound):
            export(run_id, fmt, organization_id="org-b")


def test_counts_and_rows_are_one_snapshot_while_outcomes_keep_coming(database_url, monkeypatch):
    """An outcome committed after the run's counters were read (and before the results
    are streamed) is in neither: the suite's counts and its cases agree."""
    run_id = mixed_run()
    real_read_run = snapshot_module.read_run

    def read_run_then_an_outcome_lands(conn, rid):
        run = real_read_run(conn, rid)
        record_outcome(rid, "waiting", status="failed", metrics=[verdict("new", False)])
        return run

    monkeypatch.setattr(snapshot_module, "read_run", read_run_then_an_outcome_lands)
    with run_snapshot(run_id) as snap:
        assert snap.run.failed == 1 and "new" not in snap.metric_names
        statuses = {r["test_id"]: r["status"] for r in snap.results}
    assert statuses["waiting"] == "queued"
    assert get_run(run_id).failed == 2  # it did land


def test_format_of_a_file_name():
    assert format_of("out/report.XML") == "junit" and format_of("r.jsonl") == "jsonl"
    with pytest.raises(OutputError, match=r"cannot tell the format of r\.txt"):
        format_of("r.txt")
    with pytest.raises(OutputError, match=r"name the file with \.csv, \.jsonl"):
        format_of("r.xml", allowed=("csv", "jsonl"))


def test_formula_cells_are_guarded():
    for cell in ('=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert guard_formula(cell) == "'" + cell
    assert guard_formula("Paris = capital") == "Paris = capital"


# --- hostile text: the file stays valid XML whatever the test gave ---------------------

HOSTILE = (
    "\x00\x01\x08\x0b\x0c\x1b\x7f ]]> <![CDATA[ x ]]> \"quotes\" 'single' &amp; <tag/> "
    "\ud800 lone \udfff surrogates \ufffe\uffff \U0001f600 é"
)


def fake_snapshot(test_id: str, output: str, reason: str, error: str) -> RunSnapshot:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    run = Run(
        id="00000000-0000-0000-0000-000000000001", name=test_id, status="COMPLETED",
        organization_id=None, user_id=None, total=2, done=2, passed=0, failed=1, errored=1,
        lost=0, cancelled=0, cancel_requested=False, created_at=now, started_at=now,
        finished_at=now, last_progress_at=now, collected_count=1, summary=None,
    )  # fmt: skip
    rows = [
        {"test_id": test_id, "status": "failed", "output": output, "error": None,
         "metrics": [verdict(reason, False, reason, 0.1, 0.5)], "attempts": 1,
         "duration_ms": 5},
        {"test_id": test_id + "2", "status": "error", "output": None, "error": error,
         "metrics": None, "attempts": 1, "duration_ms": None},
    ]  # fmt: skip
    return RunSnapshot(run, [], iter(rows))


def junit_of(snapshot: RunSnapshot) -> bytes:
    out = io.BytesIO()
    write_junit(snapshot, out)
    return out.getvalue()


def test_hostile_and_huge_text_still_makes_a_valid_file():
    huge = HOSTILE * 20_000  # ~2.5 MB in one answer
    suite = read_junit(junit_of(fake_snapshot(HOSTILE, huge, HOSTILE, HOSTILE + "\n" + huge)))
    bad, errored = list(suite)
    assert bad.name == xml_text(HOSTILE)
    assert bad.system_out == xml_text(huge).replace("\r", "\n")
    assert len(bad.result[0].message) <= 500
    assert errored.result[0].text == xml_text(HOSTILE + "\n" + huge)
    assert "\ufffd" in bad.name and "]]>" in bad.name and "\U0001f600" in bad.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1), st.text(), st.text(), st.text())
def test_any_text_makes_a_valid_file_that_reads_back(test_id, output, reason, error):
    suite = read_junit(junit_of(fake_snapshot(test_id, output, reason, error)))
    bad, _ = list(suite)
    # Parsers read a CR (alone or before LF) as LF: XML's end-of-line handling.
    expected = xml_text(output).replace("\r\n", "\n").replace("\r", "\n")
    assert (bad.system_out or "") == expected
    assert bad.name == xml_text(test_id)  # attributes keep CR, LF and tab (as &#13; …)
