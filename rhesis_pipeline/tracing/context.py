"""A run's W3C trace context: which trace its spans join, decided when it is launched.

Nothing here imports OpenTelemetry: a run's context is a few integers, written on the
run's row (``test_runs.trace_context``) and, as ``traceparent``/``tracestate`` options, on
each member message, so that any worker on any host — after a retry, a deferral or a
rescue — puts its spans in the run's trace, and so that the callback can emit the run's
root span with the id every test span already names as its parent.

The root span's id is derived from the run id (:func:`root_span_id`); so is the trace id
unless the run is launched in ``child`` mode (then it is the launching request's). A run
launched by a process without tracing carries nothing: a worker with tracing on then
uses the derived context (:meth:`RunTrace.derived`), so its spans still make one trace,
whose id is the run id without dashes.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: ``version-traceid-spanid-flags`` (W3C Trace Context, version 00).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True)
class SpanRef:
    """One span's W3C context: trace id, span id, whether it is sampled."""

    trace_id: int
    span_id: int
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header value of this span."""
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"

    @classmethod
    def parse(cls, value: object) -> SpanRef | None:
        """The span a ``traceparent`` value names, or None if *value* is not a valid one
        (all-zero ids are invalid)."""
        if not isinstance(value, str):
            return None
        match = _TRACEPARENT.fullmatch(value.strip())
        if match is None:
            return None
        trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
        if not trace_id or not span_id:
            return None
        return cls(trace_id, span_id, bool(int(match.group(3), 16) & 1))


def root_span_id(run_id: str) -> int:
    """The id of run *run_id*'s root span ``test_run``: 64 bits of a hash of the run id
    (never zero), so every process knows it without asking."""
    digest = hashlib.blake2b(str(run_id).encode(), digest_size=8, person=b"rhesis-run").digest()
    return int.from_bytes(digest, "big") or 1


def run_trace_id(run_id: str) -> int:
    """The trace id of a run not launched in child mode: the run id's 128 bits."""
    return uuid.UUID(str(run_id)).int or 1


@dataclass(frozen=True)
class RunTrace:
    """The trace of one run: its root span (``root``), the tracestate it carries, and the
    span it was launched from — its parent in ``child`` mode, linked in ``link`` mode."""

    root: SpanRef
    tracestate: str = ""
    parent: SpanRef | None = None
    link: SpanRef | None = None

    def message_options(self) -> dict[str, str]:
        """The options that carry this trace on a member message (a W3C carrier)."""
        options = {"traceparent": self.root.traceparent}
        if self.tracestate:
            options["tracestate"] = self.tracestate
        return options

    def to_json(self) -> dict[str, str]:
        """What is stored on the run's row (``test_runs.trace_context``)."""
        stored = self.message_options()
        if self.parent is not None:
            stored["parent"] = self.parent.traceparent
        if self.link is not None:
            stored["link"] = self.link.traceparent
        return stored

    @classmethod
    def derived(cls, run_id: str) -> RunTrace:
        """The trace of run *run_id* when it carries none (launched without tracing)."""
        return cls(SpanRef(run_trace_id(run_id), root_span_id(run_id)))

    @classmethod
    def stored(cls, run_id: str, data: Mapping[str, Any] | None) -> RunTrace:
        """The trace stored on run *run_id*'s row (or carried by one of its messages'
        options, the same keys): the derived one if *data* holds none."""
        if not isinstance(data, Mapping):
            return cls.derived(run_id)
        root = SpanRef.parse(data.get("traceparent"))
        if root is None:
            return cls.derived(run_id)
        state = data.get("tracestate")
        return cls(
            root,
            tracestate=state if isinstance(state, str) else "",
            parent=SpanRef.parse(data.get("parent")),
            link=SpanRef.parse(data.get("link")),
        )
