"""Metrics: verdicts and reasons (pure logic)."""

import pytest

from rhesis_pipeline.execution.attempt import Execution
from rhesis_pipeline.execution.metrics import evaluate, evaluate_one


def ex(output, document=None, duration_ms=10.0):
    return Execution("passed", output=output, document=document, duration_ms=duration_ms)


@pytest.mark.parametrize(
    ("metric", "output", "passed", "reason"),
    [
        ({"type": "contains", "value": "paris"}, "Capital: Paris", True, "answer contains 'paris'"),
        (
            {"type": "contains", "value": "paris", "case_sensitive": True},
            "Paris",
            False,
            "answer does not contain 'paris': 'Paris'",
        ),
        (
            {"type": "not_contains", "value": "secret"},
            "nothing here",
            True,
            "answer does not contain 'secret'",
        ),
        (
            {"type": "not_contains", "value": "secret"},
            "the SECRET is",
            False,
            "answer contains 'secret': 'the SECRET is'",
        ),
        (
            {"type": "equals", "value": "Merci."},
            " Merci. ",
            True,
            "answer equals the expected value",
        ),
        ({"type": "equals", "value": "merci."}, "Merci.", False, "expected 'merci.', got 'Merci.'"),
        ({"type": "equals", "value": {"a": 1}}, {"a": 1}, True, "answer equals the expected value"),
        ({"type": "regex", "pattern": r"\b4\b"}, "2 + 2 = 4", True, "/\\b4\\b/ matches '4'"),
        (
            {"type": "regex", "pattern": r"\b5\b"},
            "2 + 2 = 4",
            False,
            "/\\b5\\b/ does not match '2 + 2 = 4'",
        ),
    ],
)
def test_text_metrics(metric, output, passed, reason):
    verdict = evaluate_one(metric, ex(output))
    assert (verdict["passed"], verdict["reason"]) == (passed, reason)
    assert verdict["type"] == metric["type"] and verdict["name"] == metric["type"]


def test_json_path_equals_reads_the_json_response():
    doc = {"choices": [{"message": {"content": "hi"}}], "usage": {"total": 7}}
    ok = evaluate_one(
        {"type": "json_path_equals", "path": "$.usage.total", "value": 7}, ex("hi", doc)
    )
    bad = evaluate_one(
        {"type": "json_path_equals", "path": "$.usage.total", "value": 8}, ex("hi", doc)
    )
    none = evaluate_one({"type": "json_path_equals", "path": "$.nope", "value": 8}, ex("hi", doc))
    assert ok["passed"] and not bad["passed"] and not none["passed"]
    assert bad["reason"] == "$.usage.total is '7', expected '8'"
    assert none["reason"] == "$.nope matched nothing"


def test_max_latency():
    assert evaluate_one({"type": "max_latency_ms", "value": 50}, ex("x", duration_ms=20))["passed"]
    slow = evaluate_one({"type": "max_latency_ms", "value": 50}, ex("x", duration_ms=80))
    assert not slow["passed"] and slow["reason"] == "latency 80 ms > 50 ms"


def test_a_test_passes_when_all_metrics_pass_and_with_none():
    assert evaluate([], ex("x")) == (True, [])
    passed, verdicts = evaluate(
        [{"type": "contains", "value": "a", "name": "has-a"}, {"type": "contains", "value": "z"}],
        ex("abc"),
    )
    assert not passed and [v["passed"] for v in verdicts] == [True, False]
    assert verdicts[0]["name"] == "has-a"
