"""What Postgres can store: an outcome is checked before it joins a batch.

Outcomes are written in group-committed batches (:mod:`rhesis_pipeline.runs.outcomes`), so one
value the database refuses would fail every outcome in its batch. Postgres refuses
``\\u0000`` (NUL) in ``text`` and ``jsonb``, NaN and ±Infinity in ``jsonb``, and a lone
surrogate cannot even be encoded as UTF-8. A target can return any of these, so:

* a test's ``output`` and ``metrics`` (from the target) that cannot be stored make that
  one test ``error``, with a reason that names the problem and where it is
  (``output not storable: a NUL character (\\u0000) at output['k\\x00']``) — the test's
  verdict cannot be trusted if its output is not what it returned;
* error texts (ours, or an exception's message) are made storable silently: NUL and lone
  surrogates are written as escapes.

(:mod:`rhesis_pipeline.execution.values` does the same checks on what *users* submit — suites — with
messages that tell them what to fix; this module judges what *targets* return.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Protocol, TypeVar

from rhesis_pipeline.execution.values import SURROGATE

#: Deepest nesting of an output accepted (Python's JSON encoder recurses).
MAX_DEPTH = 100
#: Largest output (and metrics) stored, in bytes of JSON.
MAX_JSON_BYTES = 1024 * 1024

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def text(value: str) -> str:
    """*value* with NUL and lone surrogates written as backslash escapes."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if SURROGATE.search(value):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def problem(value: Any, path: str) -> str | None:
    """Why *value* cannot be stored as JSON in Postgres (naming where), or None."""
    return _problem(value, path, 0)


def _problem(value: Any, path: str, depth: int) -> str | None:
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return f"a NUL character (\\u0000) at {path}"
        if SURROGATE.search(value):
            return f"a lone surrogate (not UTF-8) at {path}"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} (not a JSON number) at {path}"
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return f"nesting deeper than {MAX_DEPTH} levels at {path}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"a key of type {type(key).__name__} at {path}"
            where = _key_path(path, key)
            found = (_problem(key, where, depth + 1) if isinstance(key, str | float) else None) or (
                _problem(item, where, depth + 1)
            )
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _problem(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    return None  # anything else is stored as its repr()


def _key_path(path: str, key: Any) -> str:
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f"{path}.{key}"
    shown = ascii(key) if isinstance(key, str) else repr(key)
    return f"{path}[{shown}]"


def to_json(value: Any, field: str) -> tuple[str | None, str | None]:
    """(JSON text, None), or (None, why *value* cannot be stored as field *field*)."""
    if value is None:
        return None, None
    found = problem(value, field)
    if found:
        return None, f"{field} not storable: {found}"
    try:
        encoded = json.dumps(value, default=repr, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        return None, f"{field} not storable: {type(exc).__name__}: {text(str(exc))[:200]}"
    if len(encoded) > MAX_JSON_BYTES:
        return None, (
            f"{field} not storable: {len(encoded):,} bytes as JSON, over the limit of "
            f"{MAX_JSON_BYTES:,}; return a smaller output"
        )
    return encoded, None


class StorableOutcome(Protocol):
    """What :func:`make_storable` reads and sets on an outcome (a dataclass):
    :class:`rhesis_pipeline.runs.outcomes.Outcome`, which this layer cannot import."""

    #: Marks a dataclass (what dataclasses.replace needs).
    __dataclass_fields__: ClassVar[dict[str, Any]]
    status: str
    output: Any
    metrics: Any
    error: str | None
    output_json: str | None
    metrics_json: str | None


OutcomeT = TypeVar("OutcomeT", bound=StorableOutcome)


def make_storable(outcome: OutcomeT) -> OutcomeT:
    """*outcome* (an :class:`~rhesis_pipeline.runs.outcomes.Outcome`) ready for a batch: error
    texts escaped; an output or metrics that cannot be stored turn it into ``error``
    naming the problem. Sets ``outcome.output_json`` and ``outcome.metrics_json``."""
    changes: dict[str, Any] = {}
    if outcome.error is not None:
        changes["error"] = text(str(outcome.error))
    output_json, output_problem = to_json(outcome.output, "output")
    metrics_json, metrics_problem = to_json(outcome.metrics, "metrics")
    found = output_problem or metrics_problem
    if found:
        changes.update(status="error", error=found, output=None, metrics=None)
        output_json = metrics_json = None
    ready = replace(outcome, **changes) if changes else outcome
    ready.output_json, ready.metrics_json = output_json, metrics_json
    return ready
