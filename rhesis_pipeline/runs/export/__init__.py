"""A run's results out, streamed: JUnit XML for CI, CSV for sheets, JSON Lines for code.

``rhesis-pipeline show RUN_ID --format junit|csv|jsonl [--output FILE]`` and ``run
--wait --junit FILE --output FILE.csv|.jsonl`` call :func:`export_run` /
:func:`export_file`. Every format reads the run in one snapshot (:mod:`.snapshot`: the
counters and metric names first, then the results through a server-side cursor) and
writes each result as it comes: an export's memory is one batch of rows, not the run
(a 100,000-test run: see benchmarks/export.py). A file is written whole or not at all
(:mod:`.files`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rhesis_pipeline.runs.export.csv_out import write_csv
from rhesis_pipeline.runs.export.files import OutputError, atomic_output, check_output
from rhesis_pipeline.runs.export.jsonl import write_jsonl
from rhesis_pipeline.runs.export.junit import write_junit
from rhesis_pipeline.runs.export.snapshot import RunSnapshot, run_snapshot

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "OutputError",
    "check_output",
    "export_file",
    "export_run",
    "format_of",
]

_Writer = Callable[[RunSnapshot, BinaryIO], object]

#: The export formats and their writers.
FORMATS: dict[str, _Writer] = {"junit": write_junit, "csv": write_csv, "jsonl": write_jsonl}

#: A file name's extension and the format it means.
EXTENSIONS = {".xml": "junit", ".csv": "csv", ".jsonl": "jsonl"}


def format_of(path: str | os.PathLike[str], allowed: tuple[str, ...] = tuple(FORMATS)) -> str:
    """The format file *path*'s extension names, if in *allowed*; else OutputError."""
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None or fmt not in allowed:
        known = ", ".join(e for e, f in EXTENSIONS.items() if f in allowed)
        raise OutputError(
            f"cannot tell the format of {path} from its extension; name the file with {known}"
        )
    return fmt


def export_run(run_id: str, fmt: str, out: BinaryIO, *, organization_id: str | None = None) -> None:
    """Write run *run_id* to the binary stream *out* in format *fmt* (a key of FORMATS).
    Raises RunNotFound, also for another organization's run under *organization_id*."""
    if fmt not in FORMATS:
        raise OutputError(f"unknown export format {fmt!r}; give one of {', '.join(FORMATS)}")
    with run_snapshot(run_id, organization_id=organization_id) as snapshot:
        FORMATS[fmt](snapshot, out)
        out.flush()


def export_file(
    run_id: str, fmt: str, path: str | os.PathLike[str], *, organization_id: str | None = None
) -> None:
    """:func:`export_run` to file *path*, written whole or not at all (a temporary file
    renamed over it at the end; an error leaves *path* as it was)."""
    with atomic_output(path) as out:
        export_run(run_id, fmt, out, organization_id=organization_id)
