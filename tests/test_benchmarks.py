"""Smoke test of the benchmark scripts: the fan-in benchmark runs end to end, small, on
whatever server the suite uses (a stock one too: what it cannot give is one "unavailable:"
line, not a traceback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from rhesis_pipeline.settings import libpq_url

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fanin_benchmark_measures_the_cost_of_tracing(database_url):
    result = subprocess.run(
        [sys.executable, "benchmarks/fanin.py", "--tracing", "--sizes", "100", "--trials", "1"],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "BENCH_DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OpenTelemetry modules loaded: none" in out
    # Every span of the traced run reached the local receiver: 100 attempts, root, callback.
    assert re.search(r"^\s+100\s+1\s+on\s+.* 102 of 102$", out, re.M), out
    assert re.search(r"^\s+100: [+-]\d+ us wall/test, [+-]\d+ us worker CPU/test", out, re.M), out


@pytest.mark.slow
def test_fanin_benchmark_runs_small(database_url):
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/fanin.py",
            "--sizes",
            "200",
            "--trials",
            "1",
            "--latency-runs",
            "2",
            "--backlog",
            "100",
            "--no-counters",
            "--wal-breakdown",
            "50",
        ],
        cwd=REPO,
        env={**os.environ, "BENCH_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary (median of trials):" in result.stdout
    assert "with 100 messages of another run waiting: p50" in result.stdout
    assert "Traceback" not in result.stderr
    assert "server: PostgreSQL " in result.stdout
    conn = psycopg2.connect(libpq_url(database_url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('shared_preload_libraries')")
            preloaded = "pg_stat_statements" in cur.fetchone()[0]
    finally:
        conn.close()
    # A stock server does not preload pg_stat_statements: one line says so and how to.
    statements_missing = "unavailable: WAL of this database's statements" in result.stdout
    assert statements_missing != preloaded, result.stdout
    if statements_missing:
        # The fix it names depends on the server: preload the library (a stock server), or
        # install the contrib extensions (a server without them, as the embedded one).
        (line,) = [
            ln
            for ln in result.stdout.splitlines()
            if ln.startswith("unavailable: WAL of this database's statements")
        ]
        assert "; enable with: " in line and (
            "shared_preload_libraries" in line or "postgresql-contrib" in line
        ), line
    # pg_walinspect: its figure, or why not (a superuser, WAL kept long enough).
    assert (
        "WAL of one run of 50 tests by record type (bytes per test" in result.stdout
        or "unavailable: WAL of one run of 50 tests by record type" in result.stdout
    ), result.stdout


@pytest.mark.slow
def test_diff_benchmark_runs_small(database_url):
    result = subprocess.run(
        [sys.executable, "benchmarks/diff.py", "--sizes", "1000", "--trials", "1"],
        cwd=REPO,
        env={**os.environ, "BENCH_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A to B: 10 regressions, 5 fixes; A to C: 995 regressions" in result.stdout
    assert "diff A C --json (every test listed):" in result.stdout
    assert "Traceback" not in result.stderr
