"""Checking an export as its consumers do: the JUnit schema, junitparser, csv, json."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import xmlschema
from junitparser.xunit2 import JUnitXml, TestSuite

from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.submit import launch_test_run

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "data" / "junit.xsd"
EXECUTOR = "tests.support.targets:echo"


@cache
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA_PATH))


def read_junit(data: bytes) -> TestSuite:
    """*data* validated against tests/data/junit.xsd, then read by junitparser: its one
    test suite."""
    junit_schema().validate(io.BytesIO(data))
    xml = JUnitXml.fromstring(data)  # xunit2: testcases with <properties>
    (suite,) = list(xml)
    return suite


def verdict(name, passed, reason="r", score=None, threshold=None, *, old=False):
    """A stored verdict; *old*: as stored before scores (no score/threshold keys)."""
    v = {"type": "python", "name": name, "passed": passed, "reason": reason}
    if not old:
        v |= {"score": score, "threshold": threshold}
    return v


def mixed_run(organization_id: str | None = None) -> str:
    """A run of six tests, one of each kind: passed (scored), failed (two failing metrics,
    one of them an old verdict without a score), error, lost, cancelled, and one still
    queued."""
    run_id = launch_test_run(
        [{"id": t} for t in ("ok", "bad", "boom", "gone", "revoked", "waiting")],
        executor=EXECUTOR,
        name="nightly evals",
        organization_id=organization_id,
    )
    record_outcome(
        run_id, "ok", status="passed", output="Paris", attempts=1, duration_ms=120,
        metrics=[verdict("tone", True, "polite", 0.9, 0.7), verdict("contains", True, old=True)],
    )  # fmt: skip
    record_outcome(
        run_id, "bad", status="failed", output={"answer": "Lyon"}, attempts=2, duration_ms=2500,
        metrics=[verdict("tone", False, "rude", 0.2, 0.7),
                 verdict("contains", False, "answer lacks 'Paris'", old=True)],
    )  # fmt: skip
    record_outcome(
        run_id, "boom", status="error", attempts=3, duration_ms=10,
        error="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
    )  # fmt: skip
    record_outcome(run_id, "gone", status="lost", error="worker died")
    record_outcome(run_id, "revoked", status="cancelled")
    return run_id
