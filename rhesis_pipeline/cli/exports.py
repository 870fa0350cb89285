"""The export options of ``rhesis-pipeline``: ``show --format/--output`` and ``run --wait
--junit/--output`` (the writers are :mod:`rhesis_pipeline.runs.export`).

Everything a user can get wrong is checked before work starts — the format, the file's
extension, a directory that does not exist or cannot be written — so that ``run`` never
submits a run whose report it cannot write. An unknown run id (or another organization's
run under ``--org``) is bad input here: one line, exit 2, and no file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs.export import (
    FORMATS,
    OutputError,
    check_output,
    export_file,
    export_run,
    format_of,
)
from rhesis_pipeline.runs.ids import RunIdText, resolve

FORMAT_HELP = (
    "Write the run's results as JUnit XML, CSV (a row per test, a verdict and score "
    "column per metric) or JSON Lines (the full result per line), streamed."
)
SHOW_OUTPUT_HELP = (
    "With --format: write to FILE (whole or not at all) instead of stdout; without "
    "it, the format is FILE's extension (.xml, .csv, .jsonl)."
)
JUNIT_HELP = "With --wait: write the run as JUnit XML to FILE when it finishes."
RUN_OUTPUT_HELP = (
    "With --wait: write the results to FILE when the run finishes, as CSV or JSON Lines "
    "by its extension (.csv, .jsonl)."
)


#: The names ``--format`` accepts.
FORMAT_NAMES = tuple(FORMATS)


def show_export(
    run_id: RunIdText | str, fmt: str | None, output: str | None, organization_id: str | None
) -> None:
    """``show RUN_ID --format FMT [--output FILE]``: the export to FILE or stdout. RUN_ID
    may be a prefix (resolved as ``show`` does)."""
    if fmt is None:
        assert output is not None  # show calls this with --format or --output
        fmt = format_of(output)
    if output is not None:
        check_output(output)
    try:
        found = resolve(run_id, organization_id=organization_id)
        if output is None:
            _to_stdout(found, fmt, organization_id)
        else:
            export_file(found, fmt, output, organization_id=organization_id)
    except RunNotFound as exc:
        raise OutputError(str(exc)) from exc


def _to_stdout(run_id: str, fmt: str, organization_id: str | None) -> None:
    """The export on stdout. A reader that stops early (``| head``) closes the pipe: the
    export stops there, quietly, as other Unix tools do (exit 141 like a SIGPIPE)."""
    import os

    sys.stdout.flush()  # anything printed before goes first
    try:
        export_run(run_id, fmt, sys.stdout.buffer, organization_id=organization_id)
    except BrokenPipeError:
        # Python's recipe: point stdout at /dev/null so that its flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


def run_outputs(junit: str | None, output: str | None, *, wait: bool) -> list[tuple[str, str]]:
    """The (format, path) pairs ``run``'s --junit and --output ask for, checked before the
    run is submitted; OutputError for a path that cannot be written or an extension that
    is not .csv or .jsonl, click's usage error without --wait."""
    if (junit or output) and not wait:
        flag = "--junit" if junit else "--output"
        raise click.UsageError(f"{flag} writes the results when the run finishes: add --wait")
    targets = []
    if junit is not None:
        check_output(junit)
        targets.append(("junit", junit))
    if output is not None:
        targets.append((format_of(output, allowed=("csv", "jsonl")), output))
        check_output(output)
    if len({Path(p).resolve() for _, p in targets}) < len(targets):
        raise OutputError(f"--junit and --output name the same file {output}; give two files")
    return targets


def write_run_outputs(run_id: str, targets: list[tuple[str, str]]) -> None:
    """Write each of *targets* (from :func:`run_outputs`), saying so on stderr."""
    for fmt, path in targets:
        export_file(run_id, fmt, path)
        click.echo(f"rhesis-pipeline: wrote {fmt} results of run {run_id} to {path}", err=True)
