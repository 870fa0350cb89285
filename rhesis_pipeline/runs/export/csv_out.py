"""A run as CSV, streamed: one row per test, a verdict and a score column per metric.

Columns: ``test_id, status, attempts, duration_ms, error``, then for each metric name of
the run (in name order, from the run's metric summary, read before the first row)
``NAME.passed`` (``true``/``false``, empty when the metric gave that test no verdict)
and ``NAME.score`` (empty when it gave no score), then ``output``: the answer, whole.

The answer is not cut: the file is data (for pandas, a notebook, a re-scoring script) as
much as a sheet, and a cut answer would be silently wrong there. A spreadsheet shows at
most 32,767 characters of a cell; a longer answer is cut by the spreadsheet, not here.

Formula injection: a cell a spreadsheet would run as a formula — text beginning with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return — is written with a leading
apostrophe (``'=1+2``), which Excel, LibreOffice and Google Sheets show as the text
itself (OWASP's advice). Only the free-text cells (test id, error, output) are guarded;
the number and verdict cells are written by us and never begin with such a character.
A script that wants the exact text strips one leading ``'`` from those cells, or reads
the JSONL export instead.

RFC 4180: comma-separated, ``"``-quoted where needed, CRLF line ends, UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, BinaryIO

from rhesis_pipeline.runs.export.snapshot import RunSnapshot
from rhesis_pipeline.runs.export.verdicts import by_name, plain, verdicts

FIXED_COLUMNS = ("test_id", "status", "attempts", "duration_ms", "error")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


#: A lone surrogate (half a UTF-16 pair): no UTF-8 for it. Postgres stores none, but a
#: cell must not stop the file.
_SURROGATE = re.compile("[\ud800-\udfff]")


def guard_formula(text: str) -> str:
    """*text*, with a leading apostrophe if a spreadsheet would take it for a formula (and
    any lone surrogate replaced by U+FFFD)."""
    text = _SURROGATE.sub("\ufffd", text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def header(metric_names: list[str]) -> list[str]:
    """The CSV's column names for a run with metrics *metric_names*."""
    columns = list(FIXED_COLUMNS)
    for name in metric_names:
        columns += [f"{name}.passed", f"{name}.score"]
    return [*columns, "output"]


def _number(value: Any) -> str:
    return "" if value is None else plain(value)


def _row(result: dict[str, Any], metric_names: list[str]) -> list[str]:
    error = result.get("error")
    row = [
        guard_formula(str(result["test_id"])),
        str(result.get("status") or ""),
        _number(result.get("attempts")),
        _number(result.get("duration_ms")),
        guard_formula(str(error)) if error else "",
    ]
    merged = by_name(verdicts(result.get("metrics")))
    for name in metric_names:
        passed, score = merged.get(name, (None, None))
        row += [
            "" if passed is None else str(passed).lower(),
            "" if score is None else f"{score:g}",
        ]
    output = result.get("output")
    if output is None:
        row.append("")
    else:
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        row.append(guard_formula(text))
    return row


def write_csv(snapshot: RunSnapshot, out: BinaryIO) -> int:
    """Write *snapshot*'s run to *out* as CSV (UTF-8); returns the rows written (tests)."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        writer = csv.writer(text)
        names = snapshot.metric_names
        writer.writerow(header(names))
        rows = 0
        for result in snapshot.results:
            writer.writerow(_row(result, names))
            rows += 1
        text.flush()
        return rows
    finally:
        text.detach()  # the caller owns *out*
