"""rhesis-pipeline: run test suites in parallel on Dramatiq workers with a Postgres broker.

The Python API::

    from rhesis_pipeline import launch_test_run, get_progress, get_run, on_run_finished
    from rhesis_pipeline import check_health, find_stuck_runs, revoke_runs  # operations

(the operator functions live in :mod:`rhesis_pipeline.monitor`, with the rest of what
``rhesis-monitor`` calls).

Importing this package does not connect to the database or install a broker, and none
of these functions needs the worker entry point (``rhesis_pipeline.actors``, which
installs the broker): a web backend launches runs and reads them without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0.dev0"

#: Re-exported from rhesis_pipeline.monitor.
_MONITOR = ("check_health", "find_stuck_runs", "revoke_runs")

__all__ = [
    "InvalidSubmission",
    "Run",
    "RunOptions",
    "RunSummary",
    "check_health",
    "find_stuck_runs",
    "get_progress",
    "get_results",
    "get_run",
    "launch_test_run",
    "on_run_finished",
    "revoke_runs",
]


def __getattr__(name: str) -> Any:
    # Lazy: `import rhesis_pipeline` stays cheap and side-effect free.
    if name in _MONITOR:
        from rhesis_pipeline import monitor

        return getattr(monitor, name)
    if name in __all__:
        from rhesis_pipeline.runs import api as runs

        return getattr(runs, name)
    raise AttributeError(f"module 'rhesis_pipeline' has no attribute {name!r}")
