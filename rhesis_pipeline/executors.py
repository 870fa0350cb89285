"""Executors: how one test is run.

An executor spec is stored on the run (``test_runs.executor``) and applied by
``execute_single_test`` to each test:

* ``{"type": "python", "target": "module:function"}`` (or just ``"module:function"``):
  calls ``function(test)`` with the test mapping. The function must be importable by
  the workers. It may return

  - a mapping with any of ``passed`` (bool), ``output``, ``metrics``: used as given;
  - a bool: passed or failed, no output;
  - anything else (including None): the output; the test passed (it executed).

  An exception is an execution error: the attempt fails and is retried.

The result of an execution is an :class:`Execution`; ``status`` is never None.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import InvalidSubmission

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class InvalidExecutor(InvalidSubmission):
    """The executor spec is malformed or its target cannot be imported."""


@dataclass
class Execution:
    status: str  # "passed" or "failed"
    output: Any = None
    metrics: dict[str, Any] | None = None
    duration_ms: float = 0.0


def validate_executor(executor: str | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise and check an executor spec; raises InvalidExecutor naming the problem."""
    if isinstance(executor, str):
        spec: dict[str, Any] = {"type": "python", "target": executor}
    elif isinstance(executor, Mapping):
        spec = dict(executor)
    else:
        raise InvalidExecutor(
            f"executor must be 'module:function' or a mapping, got {type(executor).__name__}"
        )
    kind = spec.get("type")
    if kind != "python":
        raise InvalidExecutor(f"executor.type {kind!r} is not supported; use 'python'")
    unknown = sorted(set(spec) - {"type", "target"})
    if unknown:
        raise InvalidExecutor(
            f"executor: unknown key(s) {', '.join(unknown)}; allowed: type, target"
        )
    target = spec.get("target")
    if not isinstance(target, str) or not _TARGET.match(target):
        raise InvalidExecutor(f"executor.target {target!r} must be 'module.path:function'")
    resolve_target(target)  # importable here, or a clear error before anything is stored
    return spec


@lru_cache(maxsize=256)
def resolve_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InvalidExecutor(
            f"executor.target {target!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); it must be importable by the workers"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InvalidExecutor(
                f"executor.target {target!r}: module {module_name!r} has no attribute {attr!r}"
            )
    if not callable(obj):
        raise InvalidExecutor(f"executor.target {target!r} is not callable")
    return obj


def execute(spec: Mapping[str, Any], test: Mapping[str, Any]) -> Execution:
    """Run *test* through the executor *spec*. Exceptions propagate (the attempt failed)."""
    fn = resolve_target(spec["target"])
    started = time.perf_counter()
    value = fn(dict(test))
    duration_ms = (time.perf_counter() - started) * 1000
    return interpret(value, duration_ms)


def interpret(value: Any, duration_ms: float = 0.0) -> Execution:
    """Turn a python target's return value into an Execution (see module docstring)."""
    if isinstance(value, bool):
        return Execution("passed" if value else "failed", duration_ms=duration_ms)
    if isinstance(value, Mapping) and ({"passed", "output", "metrics"} & set(value)):
        passed = value.get("passed", True)
        metrics = value.get("metrics")
        return Execution(
            "passed" if passed else "failed",
            output=value.get("output"),
            metrics=dict(metrics) if isinstance(metrics, Mapping) else metrics,
            duration_ms=duration_ms,
        )
    return Execution("passed", output=value, duration_ms=duration_ms)
