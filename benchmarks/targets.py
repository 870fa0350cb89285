"""Executor targets for benchmarks."""

from __future__ import annotations

from typing import Any


def noop(test: dict[str, Any]) -> bool:
    return True


def sleep(test: dict[str, Any]) -> bool:
    import time

    time.sleep(float(test.get("sleep_s", 1)))
    return True


def logged(test: dict[str, Any]) -> bool:
    """Appends the test's id to $BENCH_EXEC_LOG (executions counted without the
    database), then sleeps sleep_s (default 0.01)."""
    import os
    import time

    fd = os.open(os.environ["BENCH_EXEC_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{test['id']}\n".encode())
    finally:
        os.close(fd)
    time.sleep(float(test.get("sleep_s", 0.01)))
    return True
