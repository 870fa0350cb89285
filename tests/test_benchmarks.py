"""Smoke test of the benchmark scripts: the fan-in benchmark runs end to end, small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fanin_benchmark_runs_small(database_url):
    result = subprocess.run(
        [sys.executable, "benchmarks/fanin.py", "--sizes", "200", "--trials", "1",
         "--latency-runs", "2", "--backlog", "100", "--no-counters"],
        cwd=REPO,
        env={**os.environ, "BENCH_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary (median of trials):" in result.stdout
    assert "with 100 messages of another run waiting: p50" in result.stdout
