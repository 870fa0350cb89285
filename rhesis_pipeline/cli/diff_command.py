"""``rhesis-pipeline diff RUN_A RUN_B``: what changed from run A (the baseline) to run B,
as text or streamed JSON, with an exit code CI can gate on (1: a test regressed).

The comparison is :mod:`rhesis_pipeline.runs.diff`'s, streamed from Postgres: ``--json``
writes every changed test as the cursor yields it, the text keeps the first few of each
kind. An unknown run id is bad input (exit 2, as in every command): exit 1 means
"a test regressed", and a CI job must not read a typo as a regression.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import click

from rhesis_pipeline.cli.common import org_option, use_database
from rhesis_pipeline.errors import RhesisError, RunNotFound
from rhesis_pipeline.runs.diff import (
    ChangedTest,
    Comparison,
    Digest,
    compare,
    iter_changes,
    summarize,
)
from rhesis_pipeline.runs.ids import parse_all, resolve
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.record import Run

EXIT_CODES = """\b
Exit codes:
  0   no test regressed (none passed in RUN_A and failed or errored in RUN_B)
  1   at least one test regressed (or --json's reader closed the pipe early)
  2   bad input: a run id malformed, ambiguous, unknown, or (with --org)
      another organization's
  3   database unreachable (or the embedded server did not start)
  4   database not migrated (run `rhesis-pipeline migrate`)
  130 interrupted (Ctrl-C)
"""


class UnknownRun(RhesisError):
    """A run id that names no run this command may read (exit 2: bad input)."""

    exit_code = 2


@click.command(epilog=EXIT_CODES)
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object listing every changed test (streamed).",
)
@org_option()
def diff(run_a: str, run_b: str, as_json: bool, organization_id: str | None) -> None:
    """Compare run RUN_B with run RUN_A (the baseline), test by test.

    Lists the tests whose verdict changed (regressions: passed in A, failed or error in
    B; fixes: the reverse; other changes of status), the tests only in one run, and per
    metric the change of mean score and pass rate. Exits 1 when a test regressed, so CI
    can gate on it. RUN_A, RUN_B: a run's UUID or a unique prefix of at least 8 hex digits.
    """
    typed = [run_a, run_b]
    parsed = parse_all(typed)
    use_database(migrated=True)
    ids = []
    for text, p in zip(typed, parsed, strict=True):
        try:
            ids.append(resolve(p, organization_id=organization_id))
            get_run(ids[-1], organization_id=organization_id)  # a whole UUID is not looked up
        except RunNotFound:
            raise UnknownRun(_unknown(text, organization_id)) from None
    try:
        comparison = compare(ids[0], ids[1], organization_id=organization_id)
        if as_json:
            changes = iter_changes(ids[0], ids[1], organization_id=organization_id)
            digest = write_json(sys.stdout, comparison, changes)
        else:
            digest = summarize(ids[0], ids[1], organization_id=organization_id)
            from rhesis_pipeline.cli.text_diff import diff_text

            click.echo(diff_text(comparison, digest))
    except RunNotFound as exc:  # deleted (retention) between the lookup and the read
        raise UnknownRun(f"{exc}: it was deleted meanwhile, or is not yours") from None
    sys.exit(1 if digest.regressions else 0)


def _unknown(typed: str, organization_id: str | None) -> str:
    if organization_id is None:
        return f"no test run with id {typed}: give a run id that `rhesis-pipeline runs` lists"
    return (
        f"no test run with id {typed} for organization {organization_id}: give one of its "
        f"runs (`rhesis-pipeline runs --org {organization_id}`)"
    )


def run_header(run: Run) -> dict[str, Any]:
    """A run as ``diff --json`` shows it (``errored`` counts error and lost tests)."""
    return {
        "run_id": run.id,
        "name": run.name,
        "status": run.status.value,
        "organization_id": run.organization_id,
        "total": run.total,
        "passed": run.passed,
        "failed": run.failed,
        "errored": run.errored + run.lost,
        "cancelled": run.cancelled,
        "created_at": run.created_at.isoformat(),
    }


def write_json(out: TextIO, comparison: Comparison, changes: Iterable[ChangedTest]) -> Digest:
    """Write ``diff --json``'s object to *out*, each changed test as it comes (one line
    each, nothing kept), the counts last; returns the counts."""
    digest = Digest(shown=0)
    out.write("{\n")
    out.write(f'"run_a": {json.dumps(run_header(comparison.run_a))},\n')
    out.write(f'"run_b": {json.dumps(run_header(comparison.run_b))},\n')
    metrics = ",\n  ".join(json.dumps(m.as_dict()) for m in comparison.metrics)
    out.write('"metrics": [' + ("\n  " + metrics + "\n" if metrics else "") + "],\n")
    out.write('"tests": [')
    for i, test in enumerate(changes):
        out.write(",\n  " if i else "\n  ")
        out.write(json.dumps(test.as_dict(), default=str))
        digest.add(test)
    out.write("\n],\n" if sum(digest.counts.values()) else "],\n")
    counts = {c.value: n for c, n in digest.counts.items()}
    out.write(f'"counts": {json.dumps(counts)},\n')
    out.write(f'"regressions": {digest.regressions}\n')
    out.write("}\n")
    out.flush()
    return digest
