"""Your own metric: ``{type: python, target: "pkg.module:function", ...params}``.

The function is called with one :class:`MetricInput` (the test, the answer, the
response and the metric's own parameters) and returns one of:

* a bool: the verdict (score 1.0 or 0.0);
* a number in [0, 1]: the score; it passes when score ≥ ``threshold`` (default
  :data:`DEFAULT_THRESHOLD`);
* a mapping ``{passed, score, reason}``, each optional but one of ``passed``/``score``:
  with a ``threshold`` on the metric, the score decides; else ``passed`` does (or the
  score against the default threshold).

An ``async def`` function is awaited: on the worker's event loop for tests that run there,
on the worker thread otherwise. The function must be importable by the submitter (checked
when the run is submitted, like a python target) and by the workers.

What is not a verdict ends the **test** as ``error``, naming the metric, and is not
retried (a retry would call the same code on the same answer): an exception raised by the
function, a string, ``None``, NaN or a score outside [0, 1] returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rhesis_pipeline.execution.attempt import Execution, PermanentExecutionError
from rhesis_pipeline.execution.values import short_repr

#: The threshold a bare score is held to when the metric sets none.
DEFAULT_THRESHOLD = 0.5
#: Keys of a python metric that are not its parameters.
OWN_KEYS = frozenset({"type", "name", "target", "threshold"})


class MetricError(PermanentExecutionError):
    """A metric could not give a verdict (it raised, or returned something that is not
    one): the test ends as ``error`` with this one-line reason, not retried."""


@dataclass(frozen=True)
class MetricResponse:
    """What the executor saw of the answer."""

    #: How long the request (HTTP) or the call (python target) took, in milliseconds.
    latency_ms: float
    #: The HTTP status code; None for a python target.
    status: int | None = None
    #: The parsed JSON response (HTTP, None when the body is not JSON), or the value the
    #: python target returned.
    json: Any = None


@dataclass(frozen=True)
class MetricInput:
    """The one argument a python metric is called with."""

    #: The test as submitted (its ``id``, ``prompt``, data fields, ``metrics``).
    test: Mapping[str, Any]
    #: The answer: the value at ``response_path`` (HTTP) or the target's output (python).
    answer: Any
    response: MetricResponse
    #: The metric's other keys (``{type: python, target: …, expected: 3}``: ``expected``).
    params: Mapping[str, Any] = field(default_factory=dict)


def metric_input(
    metric: Mapping[str, Any], test: Mapping[str, Any], execution: Execution
) -> MetricInput:
    """The MetricInput of *metric* for *test*'s *execution*."""
    return MetricInput(
        test=test,
        answer=execution.output,
        response=MetricResponse(
            latency_ms=execution.duration_ms, status=execution.http_status, json=execution.document
        ),
        params={k: v for k, v in metric.items() if k not in OWN_KEYS},
    )


def raised(name: str, exc: BaseException) -> MetricError:
    """The MetricError of metric *name* whose function raised *exc*."""
    text = " ".join(str(exc).split())[:500]
    return MetricError(
        f"metric {name!r} raised {type(exc).__name__}" + (f": {text}" if text else "")
    )


def _score(name: str, value: Any, returned: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricError(
            f"metric {name!r} returned {short_repr(returned)}: a score must be a number in [0, 1]"
        )
    score = float(value)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise MetricError(
            f"metric {name!r} returned {short_repr(returned)}: a score must be a number in [0, 1]"
        )
    return score


def verdict(
    name: str, returned: Any, threshold: float | None
) -> tuple[bool, float, str, float | None]:
    """(passed, score, reason, threshold applied) of what metric *name* returned; raises
    MetricError when it is not a verdict (see the module docstring)."""
    if isinstance(returned, bool):
        score = 1.0 if returned else 0.0
        if threshold is not None:
            return score >= threshold, score, f"returned {returned}", threshold
        return returned, score, f"returned {returned}", None
    if isinstance(returned, Mapping):
        unknown = sorted(str(k) for k in set(returned) - {"passed", "score", "reason"})
        if unknown or not ({"passed", "score"} & set(returned)):
            raise MetricError(
                f"metric {name!r} returned {short_repr(dict(returned))}: a mapping has passed, "
                "score and reason (one of passed or score at least)"
            )
        passed = returned.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise MetricError(
                f"metric {name!r} returned passed={short_repr(passed)}: "
                "passed must be true or false"
            )
        reason = returned.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise MetricError(
                f"metric {name!r} returned reason={short_repr(reason)}: reason must be text"
            )
        raw = returned.get("score")
        if raw is None:
            assert passed is not None
            score = 1.0 if passed else 0.0
            decided, applied = passed, None
            if threshold is not None:
                decided, applied = score >= threshold, threshold
        else:
            score = _score(name, raw, dict(returned))
            if threshold is not None:
                decided, applied = score >= threshold, threshold
            elif passed is not None:
                decided, applied = passed, None
            else:
                decided, applied = score >= DEFAULT_THRESHOLD, DEFAULT_THRESHOLD
        return decided, score, reason or _explain(score, applied, decided), applied
    score = _score(name, returned, returned)
    applied = DEFAULT_THRESHOLD if threshold is None else threshold
    passed = score >= applied
    return passed, score, _explain(score, applied, passed), applied


def _explain(score: float, threshold: float | None, passed: bool) -> str:
    if threshold is None:
        return f"score {score:.3g}: {'passed' if passed else 'failed'}"
    return f"score {score:.3g} {'>=' if passed else '<'} threshold {threshold:g}"
