"""The cost of tracing (issue #26), for ``benchmarks/fanin.py --tracing``: runs of N
no-op tests end to end on the same workers' configuration, with tracing **off** (the
OpenTelemetry SDK installed, no OTEL_* variables: what every process does by default)
and **on** (``OTEL_EXPORTER_OTLP_ENDPOINT`` = a local OTLP/HTTP receiver in this
process, benchmarks/otlp_receiver.py, which decodes every span), trials interleaved.

A no-op test is the worst case: tracing's cost beside a test that does nothing. Per run:
end-to-end seconds, tests/s, the worker processes' CPU (utime + stime) per test, and
once every span of the run has arrived (on), the spans and protobuf bytes received. The
summary gives the cost per test of tracing: the medians' differences, in microseconds
of wall time and of worker CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from typing import Any

from benchmarks.common import timed_run, worker_pids, workers
from benchmarks.otlp_receiver import OtlpReceiver
from benchmarks.slow_endpoint import cpu_s

MODES = ("off", "on")


def _env(mode: str, receiver: OtlpReceiver) -> dict[str, str]:
    if mode == "off":
        return {}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "bench"}


def _driver_tracing(mode: str, receiver: OtlpReceiver) -> Any:
    """This process (which launches the runs) traces like the workers: its provider, or
    None (off)."""
    from rhesis_pipeline.tracing import setup

    if mode == "off":
        setup.use_tracer_provider(None)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"))
    )
    setup.use_tracer_provider(provider)
    return provider


def _spans_of(receiver: OtlpReceiver, trace_id: str) -> list[Any]:
    return [s for s in receiver.spans() if s.trace_id == trace_id]


def measure(
    url: str, n: int, mode: str, receiver: OtlpReceiver, args: argparse.Namespace
) -> dict[str, Any]:
    """One run of *n* no-op tests with tracing *mode*, on workers started for it."""
    provider = _driver_tracing(mode, receiver)
    with workers(url, processes=args.processes, threads=args.threads,
                 env=_env(mode, receiver)) as proc:  # fmt: skip
        pids = worker_pids(proc, args.processes)
        timed_run(url, 200, name="warm-up")
        cpu_before = sum(cpu_s(p) for p in pids)
        timed = timed_run(url, n, name=f"tracing-{mode}-{n}")
        spans: list[Any] = []
        if mode == "on":  # every span of the run at the receiver: the export's CPU counts
            trace_id = uuid.UUID(timed.run.id).hex
            deadline = time.monotonic() + 120
            while len(spans := _spans_of(receiver, trace_id)) < n + 2:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        cpu = sum(cpu_s(p) for p in pids) - cpu_before
    if provider is not None:
        provider.shutdown()
    return {"e2e_s": timed.e2e_s, "cpu_s": cpu, "spans": len(spans)}


def helpers_off_us(n: int = 200_000) -> float:
    """Microseconds per test that the tracing helpers cost with tracing off (no OTEL_*
    variables): an attempt's span and its outcome, timed in this process."""
    from rhesis_pipeline.tracing.attempts import Attempt
    from rhesis_pipeline.tracing.setup import tracing_enabled

    assert not tracing_enabled(), "unset the OTEL_* variables to measure tracing off"
    options: dict[str, Any] = {"max_retries": 2}
    started = time.perf_counter()
    for _ in range(n):
        with Attempt(options, "run", "test", attempt=1, executor="python") as span:
            span.outcome("passed", latency_ms=1.0)
    return (time.perf_counter() - started) / n * 1e6


def main(url: str, args: argparse.Namespace) -> int:
    sizes = args.sizes
    cost = helpers_off_us()
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(f"tracing off (no OTEL_* variables): the tracing helpers cost {cost:.2f} us per "
          f"test, timed in-process; OpenTelemetry modules loaded: "
          f"{len(loaded) or 'none'}")  # fmt: skip
    print(f"tracing off vs on: {args.trials} trials of each size, interleaved; worker "
          f"processes {args.processes} x {args.threads} threads, started for each run")  # fmt: skip
    print(f"{'tests':>7} {'trial':>5} {'mode':>4} {'end-to-end s':>13} {'tests/s':>8} "
          f"{'worker CPU us/test':>19} {'spans received':>15}")  # fmt: skip
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    with OtlpReceiver() as receiver:
        for n in sizes:
            for trial in range(1, args.trials + 1):
                for mode in MODES if trial % 2 else reversed(MODES):
                    r = measure(url, n, mode, receiver, args)
                    results.setdefault((n, mode), []).append(r)
                    expected = f"{r['spans']:,} of {n + 2:,}" if mode == "on" else "-"
                    print(f"{n:>7} {trial:>5} {mode:>4} {r['e2e_s']:>13.2f} "
                          f"{n / r['e2e_s']:>8.0f} {r['cpu_s'] / n * 1e6:>19.0f} "
                          f"{expected:>15}", flush=True)  # fmt: skip
        print(f"receiver: {receiver.requests:,} export requests, "
              f"{receiver.bytes / 1e6:,.1f} MB of protobuf")  # fmt: skip
    print("cost of tracing per test (median of trials, on minus off):")
    for n in sizes:
        off, on = results[(n, "off")], results[(n, "on")]
        wall = (statistics.median(r["e2e_s"] for r in on)
                - statistics.median(r["e2e_s"] for r in off)) / n * 1e6  # fmt: skip
        cpu = (statistics.median(r["cpu_s"] for r in on)
               - statistics.median(r["cpu_s"] for r in off)) / n * 1e6  # fmt: skip
        rate_off = n / statistics.median(r["e2e_s"] for r in off)
        rate_on = n / statistics.median(r["e2e_s"] for r in on)
        print(f"  {n:>7}: {wall:+.0f} us wall/test, {cpu:+.0f} us worker CPU/test "
              f"({rate_off:,.0f} tests/s off, {rate_on:,.0f} on)")  # fmt: skip
    return 0
