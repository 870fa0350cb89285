"""Spans of worker processes for tests: the SDK's in-memory exporter in each process,
written to a file when the process flushes its spans (our Tracing middleware does when
the worker stops).

Loaded by test workers as a module next to the actors (``modules=TRACED_MODULES``): it
sets the process's tracer provider (a process that set up OpenTelemetry itself is traced
through its provider), with an InMemorySpanExporter. ``RHESIS_TEST_SPANS`` names the
folder of the files (``<pid>.json``: every span the process finished, as the SDK's JSON).
The test process reads them with :func:`read_spans`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .workers import DEFAULT_MODULES

#: Worker modules with span capture.
TRACED_MODULES = (*DEFAULT_MODULES, "tests.support.span_capture")


class DumpOnFlush(SpanProcessor):
    """Writes the in-memory exporter's spans to ``<folder>/<pid>.json`` on force_flush."""

    def __init__(self, exporter: InMemorySpanExporter, folder: Path) -> None:
        self.exporter, self.folder = exporter, folder

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        spans = [json.loads(s.to_json(indent=None)) for s in self.exporter.get_finished_spans()]
        path = self.folder / f"{os.getpid()}.json"
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(spans))
        partial.replace(path)
        return True


def _install() -> None:
    folder = os.environ.get("RHESIS_TEST_SPANS")
    if not folder:
        return
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(DumpOnFlush(exporter, Path(folder)))
    trace.set_tracer_provider(provider)


_install()


def read_spans(folder: Path) -> list[dict]:
    """Every span the worker processes that used *folder* wrote (after they stopped)."""
    spans: list[dict] = []
    for path in sorted(folder.glob("*.json")):
        spans.extend(json.loads(path.read_text()))
    return spans
