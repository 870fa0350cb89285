"""Tracing (OpenTelemetry), in this process: a run's W3C trace context, the switches (the
standard OTEL_* variables), nothing imported when off, and what a launch stores and
emits in each RHESIS_TRACE_PARENT mode. Worker processes: test_tracing_workers.py and
test_tracing_otlp.py."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rhesis_pipeline import get_run, launch_test_run, logs
from rhesis_pipeline.errors import ConfigurationError
from rhesis_pipeline.runs.report import run_json, summary_text
from rhesis_pipeline.settings import Settings
from rhesis_pipeline.storage import engine
from rhesis_pipeline.tracing import setup
from rhesis_pipeline.tracing.attempts import Attempt
from rhesis_pipeline.tracing.context import RunTrace, SpanRef, root_span_id, run_trace_id

from .support import cli
from .support.runs import scalar
from .support.web_backend import REPO


@pytest.fixture
def spans_here():
    """This process traces through a private provider with an in-memory exporter (the
    global provider stays unset); the exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        setup.use_tracer_provider(None)
        provider.shutdown()


def run_python(
    code: str, database_url: str, otel: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """*code* in a new interpreter on the test's database, with the OTEL_* variables *otel*
    only (none of this process's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**env, **otel, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)},
        timeout=60,
    )


def _mode(database_url: str, mode: str) -> None:
    env = {"DATABASE_URL": database_url, "RHESIS_TRACE_PARENT": mode}
    engine.configure(settings_=Settings.from_env(env), url=database_url)


# -- the trace context ------------------------------------------------------------------


def test_a_traceparent_round_trips_and_a_bad_one_is_none():
    ref = SpanRef(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True)
    assert ref.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert SpanRef.parse(ref.traceparent) == ref
    assert SpanRef.parse(ref.traceparent.replace("-01", "-00")) == SpanRef(
        ref.trace_id, ref.span_id, False
    )
    for bad in (
        None,
        17,
        "",
        "garbage",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\x00",
    ):
        assert SpanRef.parse(bad) is None, bad


def test_a_run_without_a_stored_context_gets_the_one_derived_from_its_id():
    run_id = str(uuid.uuid4())
    derived = RunTrace.derived(run_id)
    assert derived.root.trace_id == uuid.UUID(run_id).int == run_trace_id(run_id)
    assert derived.root.span_id == root_span_id(run_id) != root_span_id(str(uuid.uuid4()))
    # Hostile or missing stored values fall back to it; a stored one wins.
    for stored in (None, {}, {"traceparent": "nope"}, {"traceparent": 3}, "text"):
        assert RunTrace.stored(run_id, stored) == derived
    other = SpanRef(7, 9, False)
    kept = RunTrace.stored(
        run_id,
        {"traceparent": other.traceparent, "tracestate": "k=v", "link": SpanRef(1, 2).traceparent},
    )
    assert (kept.root, kept.tracestate, kept.link, kept.parent) == (
        other,
        "k=v",
        SpanRef(1, 2),
        None,
    )
    assert RunTrace.stored(run_id, kept.to_json()) == kept


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_SERVICE_NAME": "api"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_the_standard_variables_switch_tracing(env, on):
    assert setup.configured(env) is on


def test_a_bad_trace_parent_setting_names_the_choices():
    with pytest.raises(
        ConfigurationError, match=r"RHESIS_TRACE_PARENT='sibling' is not one of link, child, none"
    ):
        Settings.from_env({"RHESIS_TRACE_PARENT": "sibling"})
    assert Settings.from_env({"RHESIS_TRACE_PARENT": " Child "}).trace_parent == "child"
    assert Settings.from_env({}).trace_parent == "link"


@pytest.mark.parametrize(
    "switches",
    [{}, {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["no-variables", "sdk-disabled"],
)
def test_off_nothing_of_opentelemetry_is_imported_by_a_launch_or_a_worker_module(
    database_url, switches
):
    # A launch and the worker entry point, in a process without the OTEL_* variables or
    # with OTEL_SDK_DISABLED=true (the SDK is installed here): no opentelemetry module is
    # loaded.
    code = (
        "import sys, rhesis_pipeline, rhesis_pipeline.actors\n"
        "run = rhesis_pipeline.launch_test_run([{'id': 1}], executor='tests.support.targets:noop')\n"
        "assert not rhesis_pipeline.tracing_enabled()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print(run, loaded)\n"
        "assert not loaded, loaded\n"
    )
    done = run_python(code, database_url, switches)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[0]
    # Nothing stored either: no trace context on the run or its message, no trace id shown.
    assert scalar("SELECT trace_context FROM rhesis.test_runs WHERE id = :r", r=run_id) is None
    assert get_run(run_id).trace_id is None and run_json(run_id)["trace_id"] is None
    assert "trace" not in summary_text(run_id)
    options = scalar("SELECT message->'options' FROM dramatiq.queue LIMIT 1")
    assert "traceparent" not in options


def test_without_the_sdk_the_variables_give_one_warning_and_no_traces(tmp_path):
    # The extra is not installed (its modules hidden): one warning line naming the fix.
    code = (
        "import sys, logging\n"
        "sys.modules['opentelemetry.sdk'] = None\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "from rhesis_pipeline import tracing_enabled\n"
        "print(tracing_enabled(), tracing_enabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
    assert done.stderr.strip().splitlines() == [
        "OTEL_* variables are set but the OpenTelemetry SDK is not installed: no traces; "
        "install it with pip install 'rhesis-pipeline[otel]'"
    ]


# -- a launch in each mode -----------------------------------------------------------------


def _launch_in_request(exporter: InMemorySpanExporter) -> tuple[str, object]:
    request_tracer = trace.get_tracer("web", tracer_provider=_provider_of(exporter))
    with request_tracer.start_as_current_span("POST /runs") as request:
        run_id = launch_test_run(
            [{"id": i} for i in range(3)],
            executor="tests.support.targets:noop",
            organization_id="org-t",
        )
    return run_id, request.get_span_context()


def _provider_of(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _stored(run_id: str) -> RunTrace:
    data = scalar("SELECT trace_context FROM rhesis.test_runs WHERE id = :r", r=run_id)
    assert data is not None
    with engine.get().connect() as conn:
        options = [
            json.loads(o) if isinstance(o, str) else o
            for (o,) in conn.exec_driver_sql(
                "SELECT message->'options' FROM dramatiq.queue WHERE message->'args'->>0 = %s",
                (run_id,),
            )
        ]
    # Every member message carries the root span's context.
    assert len(options) == 3
    assert {o["traceparent"] for o in options} == {RunTrace.stored(run_id, data).root.traceparent}
    return RunTrace.stored(run_id, data)


def test_link_mode_a_run_is_a_trace_of_its_own_linked_to_the_request(database_url, spans_here):
    _mode(database_url, "link")
    run_id, request = _launch_in_request(spans_here)
    stored = _stored(run_id)
    # The run's trace id is its id; its root span id is derived; the request is linked.
    assert stored.root == SpanRef(uuid.UUID(run_id).int, root_span_id(run_id), True)
    assert stored.link == SpanRef(request.trace_id, request.span_id, True)
    assert stored.parent is None
    # The request's trace shows the launch, linked to the run's root span.
    launch = {s.name: s for s in spans_here.get_finished_spans()}["launch_test_run"]
    assert launch.context.trace_id == request.trace_id
    assert launch.parent.span_id == request.span_id
    assert [(ln.context.trace_id, ln.context.span_id) for ln in launch.links] == [
        (stored.root.trace_id, stored.root.span_id)
    ]
    assert launch.attributes["rhesis.run.id"] == run_id
    assert launch.attributes["rhesis.run.total"] == 3
    assert launch.attributes["rhesis.organization.id"] == "org-t"
    # Where an operator finds the trace: show (text and --json), the dashboard's run page.
    trace_hex = uuid.UUID(run_id).hex
    assert get_run(run_id).trace_id == trace_hex
    assert run_json(run_id)["trace_id"] == trace_hex
    assert f"\n  trace {trace_hex}" in summary_text(run_id)
    with cli.dashboard(database_url) as (_proc, url), httpx.Client(base_url=url) as http:
        assert f"trace <code>{trace_hex}</code>" in http.get(f"/runs/{run_id}").text


def test_child_mode_a_run_is_inside_the_request_trace(database_url, spans_here):
    _mode(database_url, "child")
    run_id, request = _launch_in_request(spans_here)
    stored = _stored(run_id)
    assert stored.root == SpanRef(request.trace_id, root_span_id(run_id), True)
    assert stored.parent == SpanRef(request.trace_id, request.span_id, True)
    assert stored.link is None


def test_none_mode_and_a_launch_outside_any_span_relate_to_nothing(database_url, spans_here):
    _mode(database_url, "none")
    run_id, _ = _launch_in_request(spans_here)
    stored = _stored(run_id)
    assert stored == RunTrace(SpanRef(uuid.UUID(run_id).int, root_span_id(run_id), True))
    _mode(database_url, "link")  # no current span (a script, the CLI): no link
    run_id = launch_test_run([{"id": i} for i in range(3)], executor="tests.support.targets:noop")
    assert _stored(run_id).link is None


# -- log lines and bad variables ------------------------------------------------------------


def test_a_json_log_line_written_in_a_span_names_its_trace_and_span(spans_here):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFields())
    logger = logging.getLogger("tests.tracing.lines")
    logger.addHandler(handler)
    logger.propagate = False
    run_id = str(uuid.uuid4())
    try:
        logger.warning("outside any span")
        with Attempt({}, run_id, "t1", attempt=1, executor="python") as attempt:
            logger.warning("inside the attempt")
            span_id = f"{attempt.span.get_span_context().span_id:016x}"
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    assert (inside["trace_id"], inside["span_id"]) == (uuid.UUID(run_id).hex, span_id)


def test_bad_batch_variables_are_one_line_each_and_tracing_stays_on(database_url):
    code = (
        "import logging\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "import rhesis_pipeline\n"
        "run = rhesis_pipeline.launch_test_run([{'id': 1}], executor='tests.support.targets:noop')\n"
        "print(rhesis_pipeline.tracing_enabled())\n"
    )
    bad = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "soon",
        "OTEL_BSP_MAX_QUEUE_SIZE": "-1",
    }
    done = run_python(code, database_url, bad)
    assert done.returncode == 0, done.stderr
    # Traced with the defaults: the console exporter printed the launch's span at exit.
    assert "True" in done.stdout.splitlines() and '"name": "launch_test_run"' in done.stdout
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OTEL_BSP" in line]
    assert warnings == [
        "OTEL_BSP_SCHEDULE_DELAY='soon' is not a positive whole number; using 5000",
        "OTEL_BSP_MAX_QUEUE_SIZE='-1' is not a positive whole number; using 2048",
    ]
