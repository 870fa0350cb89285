"""Run ids as people type them: a whole UUID, or a unique prefix of one, as git takes a
commit's first digits.

Lists show a run's first 8 hex digits (the dashboard, ``rhesis-monitor workers``); every
command and dashboard URL that takes a run id accepts such a prefix of **at least 8 hex
digits** (hyphens ignored, any case). The prefix is resolved in the database, as the
caller's organization when one is given (row-level security: another organization's runs
match nothing), by one range scan of the primary key: the UUIDs that start with the
prefix are exactly those between the prefix padded with ``0`` and with ``f`` (Postgres
orders uuids byte by byte, which is their hex order). So it reads only the matching index
entries, however many runs there are.

* Not a UUID and not 8-32 hex digits: :class:`InvalidRunId` (exit code 2), naming the fix.
* Several runs match: :class:`AmbiguousRunId` (exit code 2) listing them.
* None matches: :class:`rhesis_pipeline.errors.RunNotFound` ("no test run with id …").

A whole UUID is taken as it is, without a lookup: the command that uses it says whether
the run exists, as it always did.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from rhesis_pipeline.errors import InvalidSubmission, RunNotFound
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q

#: The shortest prefix taken: the 8 digits that lists show.
MIN_PREFIX = 8
#: Matches an ambiguous prefix's error lists (more are counted as "…").
SHOWN_MATCHES = 10

_HEX = re.compile(r"[0-9a-f]+")


class InvalidRunId(InvalidSubmission):
    """A run id that is neither a UUID nor a prefix of at least 8 hex digits."""


class AmbiguousRunId(InvalidSubmission):
    """A run id prefix that more than one run starts with; ``matches`` lists them."""

    def __init__(self, message: str, matches: list[str]) -> None:
        super().__init__(message)
        self.matches = matches


@dataclass(frozen=True)
class RunIdText:
    """A parsed run id: ``full`` (a normalised UUID) or ``prefix`` (8-31 lowercase hex
    digits); exactly one of the two is set."""

    typed: str
    full: str | None = None
    prefix: str | None = None


def parse(value: str) -> RunIdText:
    """Check *value*'s form without the database; raises InvalidRunId."""
    typed = str(value).strip()
    try:
        return RunIdText(typed, full=str(uuid.UUID(typed)))
    except ValueError:
        pass
    digits = typed.replace("-", "").lower()
    if len(digits) >= MIN_PREFIX and len(digits) < 32 and _HEX.fullmatch(digits):
        return RunIdText(typed, prefix=digits)
    raise InvalidRunId(
        f"{value!r} is not a run id: give the run's UUID or its first {MIN_PREFIX} or more "
        "hex digits (as `rhesis-pipeline runs` and the dashboard show them)"
    )


def parse_all(values: Iterable[str]) -> list[RunIdText]:
    """Check every value's form (see :func:`parse`), before anything is looked up."""
    return [parse(v) for v in values]


def resolve(value: str | RunIdText, *, organization_id: str | None = None) -> str:
    """The full id of the one run *value* names (a UUID or a unique prefix), looked up as
    *organization_id*'s tenant when given; raises InvalidRunId, AmbiguousRunId or
    RunNotFound."""
    parsed = value if isinstance(value, RunIdText) else parse(value)
    if parsed.full is not None:
        return parsed.full
    assert parsed.prefix is not None
    low = _as_uuid(parsed.prefix.ljust(32, "0"))
    high = _as_uuid(parsed.prefix.ljust(32, "f"))
    with tenancy.connect(organization_id) as conn:
        found = [
            str(r)
            for r in conn.execute(
                Q["run_ids_between"], {"low": low, "high": high, "limit": SHOWN_MATCHES + 1}
            ).scalars()
        ]
    if not found:
        raise RunNotFound(f"no test run with id {parsed.typed}")
    if len(found) > 1:
        shown = ", ".join(found[:SHOWN_MATCHES]) + (", …" if len(found) > SHOWN_MATCHES else "")
        raise AmbiguousRunId(
            f"run id {parsed.typed!r} is ambiguous: "
            f"{'more than ' if len(found) > SHOWN_MATCHES else ''}"
            f"{min(len(found), SHOWN_MATCHES)} runs start with it ({shown}); give more digits",
            found[:SHOWN_MATCHES],
        )
    return found[0]


def resolve_all(values: Iterable[str], *, organization_id: str | None = None) -> list[str]:
    """Full ids of *values* in order, without repeats; every form is checked before the
    first lookup (see :func:`resolve`)."""
    out: list[str] = []
    for parsed in parse_all(values):
        run_id = resolve(parsed, organization_id=organization_id)
        if run_id not in out:
            out.append(run_id)
    return out


def _as_uuid(digits: str) -> str:
    return str(uuid.UUID(digits))
