"""A diff of two runs as text (``rhesis-pipeline diff`` without ``--json``).

Returns the text (no trailing newline) and prints nothing. Each kind of change lists the
tests :func:`rhesis_pipeline.runs.diff.summarize` kept (its first ``SHOWN``), then
"… and N more" pointing at ``--json``, which lists every test.
"""

from __future__ import annotations

from rhesis_pipeline.runs.diff import HEADINGS, Comparison, Digest, MetricChange
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.report import table

#: Characters of a test's reason shown per line (the whole of it is in --json).
REASON_WIDTH = 80


def run_line(label: str, run: Run) -> str:
    """``A 1b2c3d4e… (name): STATUS, 1000 tests: 990 passed, …``."""
    return (
        f"{label} {run.id} ({run.name}): {run.status.value}, {run.total} tests: "
        f"{run.passed} passed, {run.failed} failed, {run.errored + run.lost} errored, "
        f"{run.cancelled} cancelled"
    )


def _cut(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_WIDTH else line[: REASON_WIDTH - 1] + "…"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def metrics_table(metrics: list[MetricChange]) -> str:
    """Per metric name: mean score and pass rate in A and in B, and B's change."""
    rows = [
        [
            m.name,
            m.type,
            _score(m.mean_score_a),
            _score(m.mean_score_b),
            _delta(m.mean_score_change),
            _score(m.pass_rate_a),
            _score(m.pass_rate_b),
            _delta(m.pass_rate_change),
        ]
        for m in metrics
    ]
    headers = ["METRIC", "TYPE", "MEAN A", "MEAN B", "CHANGE", "PASS A", "PASS B", "CHANGE"]
    return table(rows, headers)


def diff_text(comparison: Comparison, digest: Digest) -> str:
    """The whole text: both runs, the counts, the tests of each kind, the metrics."""
    lines = [
        run_line("A", comparison.run_a),
        run_line("B", comparison.run_b),
        f"B against A: {digest.describe()}",
    ]
    unfinished = [label for label, run in (("A", comparison.run_a), ("B", comparison.run_b))
                  if not run.finished]  # fmt: skip
    if unfinished:
        lines.append(
            f"note: run {' and '.join(unfinished)} not finished yet: a test without an "
            "outcome is 'queued' there"
        )
    for change, heading in HEADINGS.items():
        if not digest.counts[change]:
            continue
        rows = []
        for t in digest.tests[change]:
            why = t.b.reason if t.b is not None and t.b.status != "passed" else "-"
            if t.b is None and t.a is not None:
                why = t.a.reason
            rows.append(
                [t.test_id, t.a.status if t.a else "-", t.b.status if t.b else "-", _cut(why)]
            )
        lines += ["", f"{heading}: {digest.counts[change]}"]
        lines += ["  " + ln for ln in table(rows, ["TEST", "A", "B", "WHY"]).splitlines()]
        if digest.more(change):
            lines.append(f"  … and {digest.more(change)} more (--json lists every test)")
    if comparison.metrics:
        lines += ["", "Metrics (B against A):"]
        lines += ["  " + ln for ln in metrics_table(comparison.metrics).splitlines()]
    return "\n".join(lines)
