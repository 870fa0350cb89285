"""Why ``rhesis-pipeline run --wait`` sees no progress, said once.

A run submitted with no worker to run it waits forever without a word. While
``--wait`` waits, :class:`IdleNotice` asks the monitor's diagnosis (the finding
``rhesis-monitor health`` gives) whether a live worker consumes the queue the run waits
on, and if none does, says so once on stderr with how to start one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rhesis_pipeline.cli.common import base_queue
from rhesis_pipeline.errors import RhesisError

if TYPE_CHECKING:
    from rhesis_pipeline.runs.record import Run
    from rhesis_pipeline.runs.report import ProgressPrinter


class IdleNotice:
    """``wait_for``'s on_idle: when the run does not progress, say once on stderr (through
    *progress*) if no live worker consumes its queue, and how to start one. Asks the
    diagnosis at most every *recheck_s* seconds."""

    def __init__(self, run_id: str, progress: ProgressPrinter, recheck_s: float = 30.0) -> None:
        self.run_id = run_id
        self.progress = progress
        self.recheck_s = recheck_s
        self.said = False
        self.next_check = 0.0

    def __call__(self, run: Run) -> None:
        if self.said or time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.recheck_s
        text = self.text(run)
        if text:
            self.progress.note(text)
            self.said = True

    def text(self, run: Run) -> str | None:
        """The notice for *run* as it is now, or None when a worker consumes its queue
        (or the diagnosis cannot be read: this is only a hint, and the wait goes on)."""
        from rhesis_pipeline.monitor import status
        from rhesis_pipeline.runs import queues

        try:
            findings = status(active_limit=1).findings
        except RhesisError:
            return None
        waits_on = queues.CALLBACKS if run.done == run.total else queues.TESTS
        chosen = [f for f in findings if f.code == "no_live_worker"] or [
            f
            for f in findings
            if f.code == "queue_without_consumer" and base_queue(f.subject or "") == waits_on
        ]
        if not chosen:
            return None
        finding = chosen[0]
        return (
            f"rhesis-pipeline: no live worker consumes queue {waits_on}, so run {self.run_id} "
            f"does not progress ({finding.code}): {finding.recommendation}. Still waiting; "
            "Ctrl-C stops waiting, and the run goes on"
        )
