"""A run as JSON Lines, streamed: one JSON object per test, the full stored result.

Each line is a result as :func:`~rhesis_pipeline.runs.read.iter_results` gives it, with
the run's id first: ``run_id, test_id, position, status, output, metrics, error,
attempts, duration_ms, worker, started_at, finished_at``. Times are ISO 8601 with their
zone; ``output`` and ``metrics`` are the JSON stored (a verdict: ``{"type", "name",
"passed", "reason", "score", "threshold"}``; verdicts stored before scores lack the last
two). UTF-8, one ``\\n`` after each line, no NaN (Postgres stores none).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, BinaryIO
from uuid import UUID

from rhesis_pipeline.runs.export.snapshot import RunSnapshot


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def result_line(run_id: str, result: dict[str, Any]) -> bytes:
    """One result as one line of JSON (with its newline), UTF-8."""
    data = {"run_id": run_id, **result}
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=_json_value)
    # A lone surrogate (Postgres stores none) is written as its JSON escape, \udXXX.
    return text.encode("utf-8", "backslashreplace") + b"\n"


def write_jsonl(snapshot: RunSnapshot, out: BinaryIO) -> int:
    """Write *snapshot*'s run to *out* as JSON Lines; returns the lines written (tests)."""
    lines = 0
    for result in snapshot.results:
        out.write(result_line(snapshot.run.id, result))
        lines += 1
    return lines
