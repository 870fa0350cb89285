"""One trace per run, with real worker processes (issue #26): each worker process keeps
its spans in the SDK's in-memory exporter (tests/support/span_capture.py), written out
when the worker stops — which our Tracing middleware's flush at stop triggers. The test
process launches the run inside a "request" span, through a private provider."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter, defaultdict

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rhesis_pipeline import launch_test_run
from rhesis_pipeline.tracing import setup
from rhesis_pipeline.tracing.context import root_span_id

from .support.runs import results_by_id, scalar, wait_finished
from .support.span_capture import TRACED_MODULES, read_spans
from .support.traced_endpoint import TracedEndpoint
from .support.waiting import wait_until

FAST_HEARTBEAT = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "4"}


@pytest.fixture
def request_span():
    """This process traces through a private in-memory provider; yields a function that
    launches inside a span "POST /test-runs" and returns (run id, that span's context)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.use_tracer_provider(provider)
    web = trace.get_tracer("web", tracer_provider=provider)

    def launch(tests, executor, **kwargs):
        with web.start_as_current_span("POST /test-runs") as request:
            return launch_test_run(tests, executor=executor, **kwargs), request.get_span_context()

    try:
        yield launch
    finally:
        setup.use_tracer_provider(None)
        provider.shutdown()


def hexid(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def in_trace(spans: list[dict], trace_id: int) -> list[dict]:
    return [s for s in spans if s["context"]["trace_id"] == hexid(trace_id, 32)]


@pytest.mark.slow
def test_a_run_is_one_trace_root_attempts_http_spans_and_callback(workers, request_span, tmp_path):
    # Given: two worker processes keeping their spans, an endpoint that answers "yes" and
    # fails t07's first request (500: retried), and 50 tests of which 3 expect "no".
    folder = tmp_path / "spans"
    folder.mkdir()
    failing = {"t11", "t22", "t33"}
    tests = [
        {
            "id": f"t{i:02d}",
            **(
                {"metrics": [{"type": "contains", "value": "no"}]} if f"t{i:02d}" in failing else {}
            ),
        }
        for i in range(50)
    ]
    with TracedEndpoint(fail_first={"t07"}) as endpoint:
        worker = workers.start(
            processes=2, threads=4, modules=TRACED_MODULES, env={"RHESIS_TEST_SPANS": str(folder)}
        )
        # When: the run is launched inside a traced request and runs to its end.
        run_id, request = request_span(
            tests,
            endpoint.executor(),
            name="traced",
            organization_id="org-trace",
            options={"max_retries": 2, "min_backoff_ms": 10, "max_backoff_ms": 50},
        )
        run = wait_finished(run_id, timeout=60)
        assert (run.passed, run.failed, run.total) == (47, 3, 50)
        assert results_by_id(run_id)["t07"]["attempts"] == 2
        assert worker.stop() == 0  # graceful: the Tracing middleware flushes at stop
    spans = read_spans(folder)
    assert len(list(folder.glob("*.json"))) == 2  # one file per worker process

    # Then: exactly one root span, in the run's own trace (id = the run id), whose id is
    # the one every test span names as its parent, linked to the request's span.
    trace_id = uuid.UUID(run_id).int
    mine = in_trace(spans, trace_id)
    assert {s["context"]["trace_id"] for s in spans} == {hexid(trace_id, 32)}
    (root,) = [s for s in mine if s["name"] == "test_run"]
    root_id = hexid(root_span_id(run_id), 16)
    assert root["context"]["span_id"] == root_id and root["parent_id"] is None
    assert root["attributes"] == {
        "rhesis.run.id": run_id,
        "rhesis.run.name": "traced",
        "rhesis.organization.id": "org-trace",
        "rhesis.run.total": 50,
        "rhesis.run.status": "COMPLETED",
        "rhesis.run.passed": 47,
        "rhesis.run.failed": 3,
        "rhesis.run.errored": 0,
        "rhesis.run.lost": 0,
        "rhesis.run.cancelled": 0,
        "rhesis.run.callback_latency_ms": root["attributes"]["rhesis.run.callback_latency_ms"],
        "rhesis.launched_by.trace_id": f"{request.trace_id:032x}",
        "rhesis.launched_by.span_id": f"{request.span_id:016x}",
    }
    assert [(ln["context"]["trace_id"], ln["context"]["span_id"]) for ln in root["links"]] == [
        (hexid(request.trace_id, 32), hexid(request.span_id, 16))
    ]
    # 50 + 1 attempt spans (t07's two), each a child of the root, with their verdicts.
    attempts = [s for s in mine if s["name"] == "test_attempt"]
    assert len(attempts) == 51
    assert {s["parent_id"] for s in attempts} == {root_id}
    by_test = defaultdict(list)
    for s in attempts:
        by_test[s["attributes"]["rhesis.test.id"]].append(s["attributes"])
    assert Counter(len(v) for v in by_test.values()) == Counter({1: 49, 2: 1})
    retried = sorted(by_test["t07"], key=lambda a: a["rhesis.test.attempt"])
    assert [(a["rhesis.test.attempt"], a["rhesis.test.verdict"]) for a in retried] == [
        (1, "retry"),
        (2, "passed"),
    ]
    assert "500" in retried[0]["rhesis.retry.reason"]
    for test_id in failing:
        (failed,) = by_test[test_id]
        assert failed["rhesis.test.verdict"] == "failed"
        assert failed["rhesis.test.failed_metrics"] == ["contains"]
        assert "does not contain 'no'" in failed["rhesis.test.error"]
    for a in (s["attributes"] for s in attempts):
        assert (a["rhesis.executor.type"], a["rhesis.run.id"]) == ("http", run_id)
        # The wait in the queue is on each test's first attempt (a retry waits in place).
        assert (
            (a["rhesis.wait.queue_ms"] >= 0)
            if a["rhesis.test.attempt"] == 1
            else ("rhesis.wait.queue_ms" not in a)
        )
        assert a["rhesis.test.verdict"] == "retry" or a["rhesis.test.latency_ms"] > 0
    # The HTTP client span of each request is a child of its attempt, and its context is
    # what the endpoint received as traceparent.
    clients = [s for s in mine if s["kind"] == "SpanKind.CLIENT"]
    assert len(clients) == 51
    attempt_ids = {s["context"]["span_id"] for s in attempts}
    assert {s["parent_id"] for s in clients} == attempt_ids
    sent = {tp for tps in endpoint.traceparents.values() for tp in tps}
    assert sent == {f"00-{trace_id:032x}-{s['context']['span_id'][2:]}-01" for s in clients}
    assert {s["attributes"]["http.response.status_code"] for s in clients} == {200, 500}
    # One callback span, a child of the root.
    (callback,) = [s for s in mine if s["name"] == "collect_results"]
    assert callback["parent_id"] == root_id


@pytest.mark.slow
def test_a_rescued_test_shows_both_attempts_in_the_run_trace(workers, tmp_path):
    # Given: a worker that traces, running a test whose request the endpoint holds; the
    # run launched without tracing in this process (its trace is derived from its id).
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    with TracedEndpoint(hold_first={"t-held"}) as endpoint:
        doomed = workers.start(
            processes=1,
            threads=2,
            modules=TRACED_MODULES,
            env={**FAST_HEARTBEAT, "RHESIS_TEST_SPANS": str(first)},
        )
        tests = [{"id": "t-held"}, *({"id": f"t{i}"} for i in range(3))]
        run_id = launch_test_run(tests, executor=endpoint.executor(), options={"max_retries": 1})
        wait_until(endpoint.held.is_set, timeout=30, what="the held request")
        started = (
            "SELECT c.started_at IS NOT NULL FROM rhesis.claims c JOIN rhesis.test_results r "
            "ON r.message_id = c.message_id WHERE r.run_id = :r AND r.test_id = 't-held'"
        )
        wait_until(lambda: scalar(started, r=run_id), timeout=30, what="t-held marked started")
        doomed_worker = scalar(
            "SELECT w.host || ':' || w.pid FROM rhesis.claims c JOIN rhesis.test_results r "
            "ON r.message_id = c.message_id JOIN rhesis.workers w ON w.id = c.worker_id "
            "WHERE r.run_id = :r AND r.test_id = 't-held'",
            r=run_id,
        )
        # When: its worker is SIGKILLed mid-test, and another worker takes over.
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.proc.wait(10)
        rescuer = workers.start(
            processes=1,
            threads=2,
            modules=TRACED_MODULES,
            env={**FAST_HEARTBEAT, "RHESIS_TEST_SPANS": str(second)},
        )
        run = wait_finished(run_id, timeout=60)
        assert (run.passed, run.collected_count) == (4, 1)
        assert rescuer.stop() == 0
    assert not list(first.glob("*.json"))  # the killed worker never wrote its spans
    spans = in_trace(read_spans(second), uuid.UUID(run_id).int)
    # Then: the held test's two attempts are in the run's trace, children of its root:
    # the lost one (emitted by the rescuer, from its start to the rescue) and the rerun.
    root_id = hexid(root_span_id(run_id), 16)
    held = [
        s
        for s in spans
        if s["name"] == "test_attempt" and s["attributes"]["rhesis.test.id"] == "t-held"
    ]
    verdicts = sorted(s["attributes"]["rhesis.test.verdict"] for s in held)
    assert verdicts == ["lost", "passed"]
    assert {s["parent_id"] for s in held} == {root_id}
    (lost,) = [s for s in held if s["attributes"]["rhesis.test.verdict"] == "lost"]
    assert lost["attributes"]["rhesis.worker.id"] == doomed_worker
    assert lost["attributes"]["rhesis.attempt.counted"] is False  # fast path: not charged
    assert lost["status"]["status_code"] == "ERROR"
    assert [s["name"] for s in spans].count("test_run") == 1
    assert [s["name"] for s in spans].count("collect_results") == 1


@pytest.mark.slow
def test_python_targets_on_threads_one_span_per_delivery(workers, tmp_path):
    # Given: a python target run on worker threads (each retry a new delivery of the
    # message, on any process), one test raising on every attempt.
    folder = tmp_path / "spans"
    folder.mkdir()
    worker = workers.start(
        processes=2,
        threads=2,
        modules=TRACED_MODULES,
        env={"RHESIS_TEST_SPANS": str(folder), "RHESIS_LOG_FORMAT": "json"},
    )
    tests = [{"id": "bad", "fail": True}, *({"id": f"ok{i}"} for i in range(3))]
    run_id = launch_test_run(
        tests,
        executor="tests.support.targets:boom_if_asked",
        options={"max_retries": 1, "min_backoff_ms": 10, "max_backoff_ms": 20},
    )
    run = wait_finished(run_id, timeout=60)
    assert (run.passed, run.errored, run.status.value) == (3, 1, "PARTIAL")
    assert worker.stop() == 0
    spans = in_trace(read_spans(folder), uuid.UUID(run_id).int)
    root_id = hexid(root_span_id(run_id), 16)
    attempts = [s for s in spans if s["name"] == "test_attempt"]
    assert len(attempts) == 5 and {s["parent_id"] for s in attempts} == {root_id}
    bad = sorted(
        (s["attributes"] for s in attempts if s["attributes"]["rhesis.test.id"] == "bad"),
        key=lambda a: a["rhesis.test.attempt"],
    )
    assert [(a["rhesis.test.attempt"], a["rhesis.test.verdict"]) for a in bad] == [
        (1, "retry"),
        (2, "error"),
    ]
    assert all(
        a[
            "rhesis.retry.reason" if a["rhesis.test.verdict"] == "retry" else "rhesis.test.error"
        ].startswith("RuntimeError: boom in bad")
        for a in bad
    )
    # Each delivery waited in the queue (a retry too: it went back with its backoff).
    assert all(
        a["rhesis.wait.queue_ms"] >= 0 and a["rhesis.executor.type"] == "python"
        for a in (s["attributes"] for s in attempts)
    )
    # The worker's log line of the failed attempt names its trace and span.
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    (failed_line,) = [
        ln for ln in lines if ln.get("test_id") == "bad" and "attempt 1 failed" in ln["message"]
    ]
    (first,) = [
        s
        for s in attempts
        if s["attributes"]["rhesis.test.id"] == "bad"
        and s["attributes"]["rhesis.test.attempt"] == 1
    ]
    assert failed_line["trace_id"] == uuid.UUID(run_id).hex
    assert failed_line["span_id"] == first["context"]["span_id"][2:]
    (root,) = [s for s in spans if s["name"] == "test_run"]
    assert root["attributes"]["rhesis.run.status"] == "PARTIAL"
    assert root["status"]["status_code"] == "UNSET"


@pytest.mark.slow
@pytest.mark.parametrize(
    "target", ["tests.support.targets:echo", "tests.support.metrics:async_echo"]
)
def test_the_llm_judge_call_is_a_client_span_of_its_attempt(workers, tmp_path, target):
    # Given: tests judged by an LLM judge (the local FakeJudge), on a worker thread (echo:
    # the metrics go to the event loop) or on the event loop (an async target).
    from rhesis_pipeline.demo_judge import FakeJudge

    folder = tmp_path / "spans"
    folder.mkdir()
    worker = workers.start(
        processes=1,
        threads=2,
        modules=(*TRACED_MODULES, "tests.support.metrics"),
        env={"RHESIS_TEST_SPANS": str(folder)},
    )
    with FakeJudge(latency_s=0.01) as judge:
        metric = {
            "type": "llm_judge",
            "name": "judge",
            "rubric": 'names "Paris"',
            "threshold": 0.7,
            "endpoint": {"url": judge.url, "model": "fake"},
        }
        tests = [{"id": f"j{i}", "prompt": "Paris", "metrics": [metric]} for i in range(4)]
        run_id = launch_test_run(tests, executor=target, options={"max_retries": 0})
        assert wait_finished(run_id, timeout=60).passed == 4
    assert worker.stop() == 0
    # Then: each judge request is a client span inside its test's attempt, in the run's
    # trace (never a trace of its own).
    spans = read_spans(folder)
    trace_id = hexid(uuid.UUID(run_id).int, 32)
    clients = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    attempts = {s["context"]["span_id"] for s in spans if s["name"] == "test_attempt"}
    assert len(clients) == 4 and len(attempts) == 4
    assert {s["context"]["trace_id"] for s in clients} == {trace_id}
    assert {s["parent_id"] for s in clients} == attempts
    assert {s["attributes"]["server.address"] for s in clients} == {"127.0.0.1"}
