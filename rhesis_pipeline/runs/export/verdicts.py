"""A stored result's metric verdicts, as every export reads them.

``rhesis.test_results.metrics`` is a JSON list with one verdict per metric: ``{"type",
"name", "passed", "reason", "score", "threshold"}``, where ``score`` is a float in [0, 1]
or null and ``threshold`` a float or null. Verdicts stored before scores existed lack
``score`` and ``threshold``: a missing key reads as null, and so does a value of the
wrong type (an export writes what it can, never fails on one odd row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One metric's verdict on one test. ``passed`` is None when the stored verdict has no
    boolean ``passed``; ``score`` and ``threshold`` are None when absent or not finite
    numbers."""

    name: str
    type: str
    passed: bool | None
    reason: str
    score: float | None
    threshold: float | None

    def explained(self) -> str:
        """``name: reason (score 0.42, threshold 0.7)``: one line of a failure's text."""
        numbers = []
        if self.score is not None:
            numbers.append(f"score {self.score:g}")
        if self.threshold is not None:
            numbers.append(f"threshold {self.threshold:g}")
        extra = f" ({', '.join(numbers)})" if numbers else ""
        return f"{self.name}: {self.reason or 'failed'}{extra}"


def plain(value: float | int) -> str:
    """A number as people write it: ``120`` (not ``120.0``), ``0.25``, ``1234567.5``."""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.6f}".rstrip("0").rstrip(".")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def verdicts(metrics: Any) -> list[Verdict]:
    """The verdicts of one result's ``metrics`` column (None or not a list: none)."""
    if not isinstance(metrics, list):
        return []
    found = []
    for item in metrics:
        if not isinstance(item, dict):
            continue
        passed = item.get("passed")
        found.append(
            Verdict(
                name=str(item.get("name") or item.get("type") or "metric"),
                type=str(item.get("type") or ""),
                passed=passed if isinstance(passed, bool) else None,
                reason=str(item.get("reason") or ""),
                score=_number(item.get("score")),
                threshold=_number(item.get("threshold")),
            )
        )
    return found


def by_name(found: list[Verdict]) -> dict[str, tuple[bool | None, float | None]]:
    """Per metric name, (passed, score) of one test. A name given twice (two ``contains``
    metrics) passes only if every verdict of that name passed, and scores its lowest score:
    the verdict that decides."""
    merged: dict[str, tuple[bool | None, float | None]] = {}
    for v in found:
        if v.name not in merged:
            merged[v.name] = (v.passed, v.score)
            continue
        passed, score = merged[v.name]
        if passed is None or v.passed is None:
            passed = passed if v.passed is None else v.passed
        else:
            passed = passed and v.passed
        if score is None or (v.score is not None and v.score < score):
            score = v.score
        merged[v.name] = (passed, score)
    return merged
