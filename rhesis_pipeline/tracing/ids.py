"""Span ids chosen beforehand: the run's root span is made by the callback, long after
every test span named it as its parent, so its ids must be the ones decided at launch
(:mod:`rhesis_pipeline.tracing.context`). The SDK takes a span's ids from its tracer's id
generator; ours returns preset ids when :func:`preset_ids` says so, else the SDK's."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_preset: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "rhesis_preset_span_ids", default=None
)


class PresetIds:
    """An OpenTelemetry id generator: the preset ids inside :func:`preset_ids`, else
    those of the generator it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return preset[1] if preset is not None else int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        preset = _preset.get()
        return preset[0] if preset is not None else int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        if _preset.get() is not None:
            return False
        check = getattr(self.inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False


@contextmanager
def preset_ids(trace_id: int, span_id: int) -> Iterator[None]:
    """The next span made inside gets *span_id* (and *trace_id* if it has no parent)."""
    token = _preset.set((trace_id, span_id))
    try:
        yield
    finally:
        _preset.reset(token)
