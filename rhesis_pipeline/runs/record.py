"""The one record of a test run that every reader returns: :class:`Run`.

``get_run``, ``recent_runs``, the summary ``finish_run`` hands to run-finished hooks, and
the monitor's ``unfinished_runs``/``find_stuck_runs`` all return a :class:`Run`: the
run's row (every reader reads the same columns), plus the few values only some readers
compute (ages, the stuck flag, the callback's timing), which are None where a reader
does not fill them.

:meth:`Run.as_dict` gives the JSON shape of the fields its reader chose (``json_fields``:
:data:`MONITOR_FIELDS` for the monitor's runs, :data:`SUMMARY_FIELDS` for the hooks'
summary), every field otherwise; the run's id is ``run_id`` there.

It imports only durations.py and states.py: the other runs modules and the monitor import
this one, never the reverse.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rhesis_pipeline.runs.durations import format_seconds
from rhesis_pipeline.runs.states import RunStatus

#: A run as rhesis-monitor's ``--json`` shows it (``status.runs.active``, ``check.runs``,
#: ``fix.stuck``; the "run" object of docs/reference/json.md): what ``unfinished_runs``
#: readers give.
MONITOR_FIELDS = (
    "run_id", "name", "status", "organization_id", "user_id", "total", "done", "passed",
    "failed", "errored", "lost", "cancelled", "percent", "cancel_requested", "created_at",
    "started_at", "last_progress_at", "age_s", "idle_s", "stuck", "reason",
)  # fmt: skip

#: The summary handed to run-finished hooks (``finish_run``), as ``summary.as_dict()``.
SUMMARY_FIELDS = (
    "run_id", "name", "status", "organization_id", "user_id", "total", "passed", "failed",
    "errored", "lost", "cancelled", "duration_s", "callback_latency_ms", "extra",
)  # fmt: skip


@dataclass
class Run:
    """One test run: its ``rhesis.test_runs`` row, and what some readers add.

    Counters: ``done`` tests have a terminal outcome, of which ``passed``, ``failed``,
    ``errored`` (error after the last retry), ``lost`` (expired) and ``cancelled``.
    ``cancel_requested``: the run was revoked. ``summary``: what the callback stored.
    ``collected_count``: times the completion callback finished it (1 once final).
    """

    id: str
    name: str
    status: RunStatus
    organization_id: str | None
    user_id: str | None
    total: int
    done: int
    passed: int
    failed: int
    errored: int
    lost: int
    cancelled: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_progress_at: datetime | None
    collected_count: int
    summary: dict[str, Any] | None
    # Filled by the monitor's readers (unfinished_runs, find_stuck_runs), seconds by the
    # database's clock: since creation; since it became QUEUED (creation) or IN_PROGRESS
    # (start); since its last progress (or since it started or was created).
    age_s: float | None = None
    in_status_s: float | None = None
    idle_s: float | None = None
    #: Stuck after the reader's threshold (see rhesis_pipeline.monitor.stuck).
    stuck: bool | None = None
    # Set on a finished run (by finish_run, and from its summary by every reader): seconds
    # from start (or creation) to the end, and ms from the last outcome's commit to the
    # callback's. None while the run is not finished.
    duration_s: float | None = None
    callback_latency_ms: float | None = None
    #: The run this one re-ran (rhesis_pipeline.runs.rerun), if it is a re-run.
    rerun_of: str | None = None
    #: The id (32 hex digits) of the run's OpenTelemetry trace, when it was launched by a
    #: process that traces (see rhesis_pipeline.tracing); read by get_run.
    trace_id: str | None = None
    #: Free for hooks and callers; finish_run leaves it empty.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The fields :meth:`as_dict` gives by default (the reader's JSON shape); None: all.
    json_fields: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], **values: Any) -> Run:
        """A run from a database row (its columns named as the fields; others ignored),
        with *values* set on top."""
        data = {k: v for k, v in row.items() if k in _ROW_FIELDS}
        data["id"] = str(data["id"])
        if data.get("rerun_of") is not None:
            data["rerun_of"] = str(data["rerun_of"])
        # A finished run's row has no columns for these: finish_run stored them in its
        # summary, which every reader of the row returns.
        summary = data.get("summary")
        for name in ("duration_s", "callback_latency_ms"):
            if data.get(name) is None and isinstance(summary, Mapping):
                data[name] = summary.get(name)
        data.update(values)
        return cls(**data)

    def __post_init__(self) -> None:
        # A row gives the status as text: the record holds it as the enum.
        self.status = RunStatus(self.status)

    @property
    def percent(self) -> float:
        """Tests done, in percent of the total, to 2 decimals (100.0 for no tests)."""
        return round(100.0 * self.done / self.total, 2) if self.total else 100.0

    @property
    def finished(self) -> bool:
        """The callback has set a final status (see RunStatus)."""
        return self.status.final

    @property
    def reason(self) -> str:
        """Why it counts as stuck, e.g. "in progress for 3h12m, last progress 45m00s ago"
        (from ``in_status_s`` and ``idle_s``)."""
        verb = "queued" if self.status == RunStatus.QUEUED else "in progress"
        text = f"{verb} for {format_seconds(self.in_status_s)}"
        if self.status == RunStatus.IN_PROGRESS and self.last_progress_at is not None:
            text += f", last progress {format_seconds(self.idle_s)} ago"
        elif self.status == RunStatus.IN_PROGRESS:
            text += ", no test finished yet"
        return text

    def as_dict(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """JSON-ready values (times in ISO 8601, ``percent`` to 1 decimal) of *fields*;
        default: the reader's ``json_fields``, else every field plus run_id, percent and
        finished."""
        names = fields if fields is not None else (self.json_fields or ALL_FIELDS)
        return {name: self._json_value(name) for name in names}

    def _json_value(self, name: str) -> Any:
        if name == "run_id":
            return self.id
        if name == "percent":
            return round(100.0 * self.done / self.total, 1) if self.total else 100.0
        value = getattr(self, name)
        if isinstance(value, RunStatus):
            return value.value
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return copy.deepcopy(value)
        return value


_ROW_FIELDS = frozenset(f.name for f in dataclasses.fields(Run)) - {"json_fields"}

#: What ``as_dict()`` gives for a run whose reader chose no shape.
ALL_FIELDS = (
    "run_id",
    *(f.name for f in dataclasses.fields(Run) if f.name not in ("id", "json_fields")),
    "percent",
    "finished",
)
