"""Spans over the network (issue #26): worker processes, the CLI and the FastAPI example
export by OTLP/HTTP (protobuf) to a local receiver (benchmarks/otlp_receiver.py, which
decodes the requests with opentelemetry-proto), switched on by the standard OTEL_*
variables alone. The example's request span is linked from the run's root span, or is
its parent in child mode."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from benchmarks.otlp_receiver import OtlpReceiver, ReceivedSpan
from rhesis_pipeline import launch_test_run
from rhesis_pipeline.tracing.context import root_span_id

from .support import cli
from .support.runs import wait_finished
from .support.waiting import wait_until
from .support.web_backend import REPO, serve_backend

#: OTLP SpanKind values (opentelemetry-proto's enum).
SERVER, CONSUMER = 2, 5


def otel_env(receiver: OtlpReceiver, service: str, **more: str) -> dict[str, str]:
    """The standard variables only: the endpoint, the service name, a short batch delay."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **more,
    }


def received(
    receiver: OtlpReceiver, trace_id: str, name: str, count: int = 1
) -> list[ReceivedSpan]:
    """The spans *name* of trace *trace_id*, once *count* of them have arrived."""

    def arrived() -> list[ReceivedSpan] | None:
        found = [s for s in receiver.spans() if s.trace_id == trace_id and s.name == name]
        return found if len(found) >= count else None

    return wait_until(arrived, timeout=30, what=f"{count} {name} span(s) at the receiver")


@pytest.mark.slow
def test_worker_processes_and_the_cli_export_spans_over_otlp_http(workers, database_url, tmp_path):
    with OtlpReceiver() as receiver:
        # Given: two worker processes whose only tracing configuration is OTEL_* variables.
        worker = workers.start(processes=2, threads=4, env=otel_env(receiver, "rhesis-workers"))
        # When: a run is launched by this process (which does not trace) and runs.
        run_id = launch_test_run(
            [{"id": i} for i in range(20)], executor="tests.support.targets:noop"
        )
        assert wait_finished(run_id, timeout=60).passed == 20
        # Then: its spans reach the receiver while the workers run (batches every 100 ms):
        # the root, 20 attempts and the callback, in the trace derived from the run id.
        trace_id = uuid.UUID(run_id).hex
        (root,) = received(receiver, trace_id, "test_run")
        assert root.span_id == f"{root_span_id(run_id):016x}" and root.parent_span_id == ""
        assert (root.kind, root.service) == (CONSUMER, "rhesis-workers")
        assert root.attributes["rhesis.run.passed"] == 20
        attempts = received(receiver, trace_id, "test_attempt", 20)
        assert len(attempts) == 20 and {s.parent_span_id for s in attempts} == {root.span_id}
        assert {s.attributes["rhesis.executor.type"] for s in attempts} == {"python"}
        (callback,) = received(receiver, trace_id, "collect_results")
        assert callback.parent_span_id == root.span_id
        assert all(s.resource["service.instance.id"] for s in attempts)
        assert worker.stop() == 0

        # And: the CLI traces its launch too (flushed when it exits), linked to the run.
        suite = Path(tmp_path / "suite.yaml")
        suite.write_text(
            "name: cli traced\nendpoint: {type: python, target: 'tests.support.targets:noop'}\n"
            "tests:\n  - {id: a}\n  - {id: b}\n"
        )
        done = cli.run(
            "rhesis-pipeline",
            "run",
            str(suite),
            "--json",
            env={
                **otel_env(receiver, "rhesis-cli"),
                "PYTHONPATH": str(REPO),
                "DATABASE_URL": database_url,
            },
        )
        assert done.returncode == 0, done.stderr
        cli_run = json.loads(done.stdout)["run_id"]
        launch = launch_span(receiver, cli_run)
        assert launch.service == "rhesis-cli" and launch.attributes["rhesis.run.total"] == 2
        assert launch.links == ((uuid.UUID(cli_run).hex, f"{root_span_id(cli_run):016x}"),)


def launch_span(receiver: OtlpReceiver, run_id: str) -> ReceivedSpan:
    """The ``launch_test_run`` span of run *run_id*, once it has arrived."""
    return wait_until(
        lambda: [
            s
            for s in receiver.spans()
            if s.name == "launch_test_run" and s.attributes.get("rhesis.run.id") == run_id
        ],
        timeout=30,
        what=f"the launch span of run {run_id}",
    )[0]


def _launch_through_backend(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as http:
        launched = http.post(
            "/runs",
            headers={"X-Organization-Id": "org-web", "X-User-Id": "ann"},
            json={
                "name": "web traced",
                "tests": [{"id": f"w{i}"} for i in range(5)],
                "executor": "tests.support.targets:noop",
            },
        )
    assert launched.status_code == 201, launched.text
    return str(launched.json()["run_id"])


def _request_span(receiver: OtlpReceiver, run_id: str) -> tuple[ReceivedSpan, ReceivedSpan]:
    """The example's server span of the POST that launched *run_id*, and the launch span
    (its child)."""
    launch = launch_span(receiver, run_id)
    request = wait_until(
        lambda: [s for s in receiver.spans() if s.span_id == launch.parent_span_id],
        timeout=30,
        what="the request span",
    )[0]
    assert (request.kind, request.service, request.name) == (SERVER, "web-backend", "POST /runs")
    return request, launch


@pytest.mark.slow
def test_the_web_example_request_is_linked_from_the_run_or_its_parent(web_user, workers, tmp_path):
    with OtlpReceiver() as receiver:
        workers.start(processes=1, threads=4, env=otel_env(receiver, "rhesis-workers"))
        # Given: the FastAPI example, traced by the OTEL_* variables alone (link mode).
        with serve_backend(
            web_user, tmp_path / "web.log", otel_env(receiver, "web-backend")
        ) as base:
            run_id = _launch_through_backend(base)
            assert wait_finished(run_id, timeout=60).passed == 5
            request, launch = _request_span(receiver, run_id)
            # Then: the run is a trace of its own whose root links to the request's span
            # and names its trace; the request's trace holds the launch, linked to the run.
            (root,) = received(receiver, uuid.UUID(run_id).hex, "test_run")
            assert root.links == ((request.trace_id, request.span_id),)
            assert root.attributes["rhesis.launched_by.trace_id"] == request.trace_id
            assert root.attributes["rhesis.organization.id"] == "org-web"
            assert launch.trace_id == request.trace_id != root.trace_id
            assert launch.links == ((root.trace_id, root.span_id),)
            assert not [
                s
                for s in receiver.spans()
                if s.trace_id == request.trace_id and s.name == "test_attempt"
            ]
        # When: the same example in child mode.
        child_env = {**otel_env(receiver, "web-backend"), "RHESIS_TRACE_PARENT": "child"}
        with serve_backend(web_user, tmp_path / "web-child.log", child_env) as base:
            run_id = _launch_through_backend(base)
            assert wait_finished(run_id, timeout=60).passed == 5
            request, _ = _request_span(receiver, run_id)
            # Then: the run is inside the request's trace, its root a child of the request.
            (root,) = received(receiver, request.trace_id, "test_run")
            assert root.attributes["rhesis.run.id"] == run_id
            assert root.parent_span_id == request.span_id and root.links == ()
            attempts = received(receiver, request.trace_id, "test_attempt", 5)
            assert {s.parent_span_id for s in attempts} == {root.span_id}


@pytest.mark.slow
def test_a_stopping_worker_flushes_the_spans_it_still_holds(workers):
    with OtlpReceiver() as receiver:
        # Given: a worker whose batch processor would export only every 10 minutes.
        env = {**otel_env(receiver, "rhesis-workers"), "OTEL_BSP_SCHEDULE_DELAY": "600000"}
        worker = workers.start(processes=1, threads=2, env=env)
        run_id = launch_test_run(
            [{"id": i} for i in range(5)], executor="tests.support.targets:noop"
        )
        assert wait_finished(run_id, timeout=60).passed == 5
        trace_id = uuid.UUID(run_id).hex
        assert not [s for s in receiver.spans() if s.trace_id == trace_id]  # still held
        # When: it stops (SIGTERM), then: its 7 spans reach the receiver before it exits.
        assert worker.stop() == 0
        spans = [s for s in receiver.spans() if s.trace_id == trace_id]
        assert sorted(s.name for s in spans) == [
            "collect_results",
            *["test_attempt"] * 5,
            "test_run",
        ]
