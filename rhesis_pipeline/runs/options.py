"""A run's execution settings (:class:`RunOptions`) and their validation.

Stored with the run (``test_runs.options``) and carried on every member message as the
options dramatiq's Retries and TimeLimit middleware read, so each run has its own retries,
backoff and time limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.errors import InvalidSubmission

#: Most retries a run may ask for after a member's failed attempt.
MAX_RETRIES = 20
#: Longest time limit of one attempt a run may ask for, in milliseconds (5 minutes, the
#: completion callback's own limit). A stopping worker waits for the attempts it executes
#: to end, so this bounds how long a shutdown may take: the Kubernetes worker's
#: terminationGracePeriodSeconds is derived from it (tests/test_kubernetes.py).
MAX_TIME_LIMIT_MS = 300_000


@dataclass(frozen=True)
class RunOptions:
    """Per-run execution settings.

    max_retries: retries after a failed attempt (0 = one attempt only); 0..20.
    min_backoff_ms / max_backoff_ms: exponential backoff between attempts, in
        milliseconds, with jitter (dramatiq's: the delay is min_backoff * 2**retry,
        capped at max_backoff, then jittered).
    time_limit_ms: the most one attempt may take, in milliseconds (1..300,000); exceeding
        it fails the attempt (which is retried like any failure).
    """

    max_retries: int = 2
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000
    time_limit_ms: int = 60_000

    @classmethod
    def parse(cls, options: Mapping[str, Any] | RunOptions | None) -> RunOptions:
        """*options* as RunOptions: None gives the defaults, a mapping names some fields
        (whole numbers). Raises InvalidSubmission naming an unknown key or a bad value."""
        if options is None:
            return cls()
        if isinstance(options, RunOptions):
            return options
        if not isinstance(options, Mapping):
            raise InvalidSubmission(f"options must be a mapping, got {type(options).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidSubmission(
                f"options: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        values: dict[str, int] = {}
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSubmission(f"options.{key} must be a whole number, got {value!r}")
            values[key] = value
        parsed = cls(**values)
        parsed.validate()
        return parsed

    def validate(self) -> None:
        """Raise InvalidSubmission naming the first field out of its range."""
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise InvalidSubmission(
                f"options.max_retries must be 0..{MAX_RETRIES}, got {self.max_retries}"
            )
        if self.min_backoff_ms < 1:
            raise InvalidSubmission("options.min_backoff_ms must be at least 1")
        if self.max_backoff_ms < self.min_backoff_ms:
            raise InvalidSubmission("options.max_backoff_ms must be at least min_backoff_ms")
        if not 1 <= self.time_limit_ms <= MAX_TIME_LIMIT_MS:
            raise InvalidSubmission(
                f"options.time_limit_ms must be 1..{MAX_TIME_LIMIT_MS} "
                f"(at most {MAX_TIME_LIMIT_MS // 60_000} minutes), got {self.time_limit_ms}"
            )

    def message_options(self) -> dict[str, int]:
        """The options dramatiq's Retries and TimeLimit middleware read from a message
        (their names, milliseconds)."""
        return {
            "max_retries": self.max_retries,
            "min_backoff": self.min_backoff_ms,
            "max_backoff": self.max_backoff_ms,
            "time_limit": self.time_limit_ms,
        }
