"""The repair policy behind ``rhesis-monitor fix``: which stuck runs to revoke, and what
to recommend afterwards.

A fix goes in three steps, which a caller drives (the CLI asks a question between them)::

    plan = plan_fix(stuck_minutes=30, auto_revoke_hours=2)   # reads the status
    for run in plan.offered:        # stuck for 30 min: revoke only if someone agrees
        if agreed(run):
            plan.revoke(run)
        else:
            plan.decline(run)
    for run in plan.automatic:      # stuck for 2 h: revoked without asking
        plan.revoke(run)
    report = plan.report()          # reads the status again: FixReport

or at once, without questions: ``apply_fix(plan_fix(...), revoke_offered=True)``.

Policy: a run is *stuck* after ``stuck_minutes`` (see :mod:`.stuck`); a run already
revoked (``cancel_requested``, waiting for its callback) is not stuck any more. Of the
stuck runs, those QUEUED or IN_PROGRESS for ``auto_revoke_hours`` or longer are
*automatic*, the others are *offered*. Each :meth:`FixPlan.revoke` is one transaction
(:func:`.revoke.revoke_runs` of one run): an interruption between two of them leaves every
run either revoked or untouched. In a dry run nothing is asked or changed: every stuck run
is reported as it would be revoked, and the recommendations are the findings from before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rhesis_pipeline.monitor.diagnosis import PROBLEM, WARNING, Finding, plural
from rhesis_pipeline.monitor.revoke import RevokeOutcome, revoke_runs
from rhesis_pipeline.monitor.status import Status, status
from rhesis_pipeline.monitor.stuck import find_stuck_runs
from rhesis_pipeline.runs.record import Run

#: Most stuck runs a recommendation names by id.
NAMED_RUNS = 10


@dataclass
class FixPlan:
    """The stuck runs at the start of a fix, split into offered and automatic ones, and
    what has been done to them so far (``revoked``, ``declined``)."""

    stuck_minutes: float  # runs stuck this long are offered for revocation
    auto_revoke_hours: float  # runs QUEUED or IN_PROGRESS this long are revoked anyway
    dry_run: bool
    before: Status  # the status read first (its stuck threshold: stuck_minutes)
    stuck: list[Run]  # every stuck run not revoked yet, oldest first
    revoked: list[RevokeOutcome] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)  # run ids left as they are

    @property
    def stuck_hours(self) -> float:
        return self.stuck_minutes / 60.0

    @property
    def stuck_s(self) -> float:
        return self.stuck_hours * 3600

    @property
    def auto_revoke_s(self) -> float:
        return self.auto_revoke_hours * 3600.0

    @property
    def automatic(self) -> list[Run]:
        """Stuck runs QUEUED or IN_PROGRESS for auto_revoke_hours or more: revoked
        without asking."""
        return [r for r in self.stuck if (r.in_status_s or 0.0) >= self.auto_revoke_s]

    @property
    def offered(self) -> list[Run]:
        """The other stuck runs: revoked only if the operator agrees (or ``--yes``)."""
        return [r for r in self.stuck if (r.in_status_s or 0.0) < self.auto_revoke_s]

    def revoke(self, run: Run) -> RevokeOutcome:
        """Revoke *run* in one transaction (in a dry run: say what would be done)."""
        (outcome,) = revoke_runs([run.id], dry_run=self.dry_run)
        self.revoked.append(outcome)
        return outcome

    def decline(self, run: Run) -> None:
        """Leave *run* as it is (the operator said no)."""
        self.declined.append(run.id)

    def report(self) -> FixReport:
        """What was done, with the recommendations from the state now (in a dry run:
        the findings of :attr:`before`)."""
        if self.dry_run:
            recommendations = list(self.before.findings)
        else:
            after = status(max_hours=self.stuck_hours)
            still = [r for r in find_stuck_runs(self.stuck_hours) if not r.cancel_requested]
            recommendations = recommendations_after(after, still)
        return FixReport(
            dry_run=self.dry_run,
            stuck_minutes=self.stuck_minutes,
            auto_revoke_hours=self.auto_revoke_hours,
            before=self.before,
            stuck=self.stuck,
            revoked=list(self.revoked),
            declined=list(self.declined),
            recommendations=recommendations,
        )


@dataclass
class FixReport:
    """The result of a fix; ``as_dict()`` is ``rhesis-monitor fix --json``."""

    dry_run: bool
    stuck_minutes: float
    auto_revoke_hours: float
    before: Status
    stuck: list[Run]
    revoked: list[RevokeOutcome]
    declined: list[str]
    recommendations: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.recommendations if f.severity == PROBLEM]

    @property
    def healthy(self) -> bool:
        """No problem remains (warnings may)."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "stuck_minutes": self.stuck_minutes,
            "auto_revoke_hours": self.auto_revoke_hours,
            "status": self.before.as_dict(),
            "stuck": [r.as_dict() for r in self.stuck],
            "revoked": [o.as_dict() for o in self.revoked],
            "declined": self.declined,
            "recommendations": [f.as_dict() for f in self.recommendations],
            "healthy": self.healthy,
        }


def plan_fix(
    stuck_minutes: float = 30.0, auto_revoke_hours: float = 2.0, *, dry_run: bool = False
) -> FixPlan:
    """Read the status and the stuck runs (see the module's docstring); changes nothing.

    stuck_minutes: runs stuck this long are offered for revocation (0: every unfinished
    run). auto_revoke_hours: those QUEUED or IN_PROGRESS this long are revoked without
    asking. dry_run: :meth:`FixPlan.revoke` only reports what it would do.
    """
    stuck_hours = stuck_minutes / 60.0
    before = status(max_hours=stuck_hours)
    stuck = [r for r in find_stuck_runs(stuck_hours) if not r.cancel_requested]
    return FixPlan(
        stuck_minutes=stuck_minutes,
        auto_revoke_hours=auto_revoke_hours,
        dry_run=dry_run,
        before=before,
        stuck=stuck,
    )


def apply_fix(plan: FixPlan, *, revoke_offered: bool | Callable[[Run], bool] = False) -> FixReport:
    """Carry out *plan* without asking anyone: revoke the automatic runs, and the offered
    ones if *revoke_offered* is true (or returns true for the run); decline the others.
    In a dry run every stuck run is reported as it would be revoked."""
    for run in plan.offered:
        if plan.dry_run or (revoke_offered(run) if callable(revoke_offered) else revoke_offered):
            plan.revoke(run)
        else:
            plan.decline(run)
    for run in plan.automatic:
        plan.revoke(run)
    return plan.report()


def recommendations_after(after: Status, still_stuck: Sequence[Run]) -> list[Finding]:
    """What to do next, once stuck runs were revoked (or left): the findings of *after*,
    the status read afterwards, with its stuck-runs finding replaced by one naming the
    runs *still_stuck* (revoked runs are not stuck any more, although they stay
    IN_PROGRESS until their callback has run), and a warning if revoked runs wait for
    their callback."""
    recommendations = [f for f in after.findings if f.code != "stuck_runs"]
    if still_stuck:
        ids = " ".join(r.id for r in still_stuck[:NAMED_RUNS])
        ids += " ..." if len(still_stuck) > NAMED_RUNS else ""
        recommendations.insert(
            0,
            Finding(
                "stuck_runs",
                PROBLEM,
                f"{plural(len(still_stuck), 'stuck run')} left as they are",
                f"revoke them with `rhesis-monitor revoke {ids}`, or find out why they "
                "do not progress with `rhesis-monitor inspect RUN_ID`",
            ),
        )
    cancelling = [r for r in after.snapshot.runs.runs if r.cancel_requested]
    if cancelling:
        recommendations.append(
            Finding(
                "runs_cancelling",
                WARNING,
                f"{plural(len(cancelling), 'revoked run')} wait for their callback",
                "a live worker consuming rhesis-callbacks finishes them as CANCELLED",
            )
        )
    return recommendations
