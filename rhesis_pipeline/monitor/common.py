"""What the operator modules share: JSON-ready values, run-id parsing, actor names."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rhesis_pipeline.runs.ids import InvalidRunId

#: Actor names of a run's members and of its completion callback (rhesis_pipeline.actors).
MEMBER_ACTOR = "execute_single_test"
CALLBACK_ACTOR = "collect_results"


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of a timestamp (None stays None): how ``--json`` shows times."""
    return None if value is None else value.isoformat()


def seconds(value: Any) -> float | None:
    """A database age (Decimal/float seconds) as float seconds rounded to ms."""
    return None if value is None else round(float(value), 3)


def parse_run_ids(values: Iterable[str]) -> list[str]:
    """Normalise whole run ids (UUIDs), keeping order and dropping repeats; raises
    InvalidRunId naming the first malformed one. (Prefixes, as the command-line tools and
    the dashboard take them, are resolved first by :mod:`rhesis_pipeline.runs.ids`.)"""
    out: list[str] = []
    for value in values:
        try:
            run_id = str(uuid.UUID(str(value).strip()))
        except ValueError:
            raise InvalidRunId(f"{value!r} is not a run id (a UUID)") from None
        if run_id not in out:
            out.append(run_id)
    return out


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
