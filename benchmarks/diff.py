"""Diffing two big runs: wall time and peak memory of ``rhesis-pipeline diff A B``.

    python benchmarks/diff.py [--sizes 10000 100000] [--trials 3]

For each size N: launches three runs of N tests through the launch path (``launch_test_run``,
streamed from a generator) and stores every outcome with one bulk UPDATE per run (no
workers: what is measured is the diff). In run B, 1 test in 100 that passed in A fails (a
regression) and 1 in 200 that failed in A passes (a fix); in run C every test fails (the
JSON lists nearly every test); every test carries a metric verdict with a score. Then runs
``rhesis-pipeline diff A B --json > /dev/null``, the text form, the same as the runs'
organization's tenant (``--org``: row-level security) and ``diff A C --json`` as
subprocesses and prints, per trial, the wall time and the command's peak RSS
(``ru_maxrss`` from ``os.wait4``; the command is started by a small process, see SPAWN),
beside ``rhesis-pipeline check`` (the same program with nothing to diff: imports,
settings, a connection). Checks the exit code (1: regressions) and the counts the text
prints. Bounded memory: the peak must not grow with N.

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine

#: In run A, tests whose position is 2 modulo 200 fail; in run B, those whose position is
#: 1 modulo 100 (the others pass): B has N/100 regressions and N/200 fixes.
STORE_OUTCOMES = """
UPDATE rhesis.test_results
SET status = CASE WHEN position % :modulo = :rest THEN 'failed' ELSE 'passed' END,
    metrics = jsonb_build_array(jsonb_build_object(
        'type', 'python', 'name', 'quality', 'passed', position % :modulo <> :rest,
        'reason', 'benchmark verdict',
        'score', CASE WHEN position % :modulo = :rest THEN 0.2 ELSE 0.9 END,
        'threshold', 0.5)),
    error = NULL, attempts = 1, duration_ms = 1.0, started_at = now(), finished_at = now()
WHERE run_id = :run_id
"""

FINISH_RUN = """
UPDATE rhesis.test_runs r
SET done = r.total, passed = c.passed, failed = c.failed,
    status = CASE WHEN c.failed > 0 THEN 'PARTIAL' ELSE 'COMPLETED' END,
    started_at = now(), finished_at = now(), last_progress_at = now()
FROM (
    SELECT count(*) FILTER (WHERE status = 'passed') AS passed,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM rhesis.test_results WHERE run_id = :run_id
) AS c
WHERE r.id = :run_id
"""


#: The organization of the runs: ``diff --org`` reads them as its tenant (row-level security).
ORG = "org-bench"


def make_run(n: int, modulo: int, rest: int) -> str:
    """A finished run of *n* tests in which those whose position is *rest* modulo *modulo*
    failed and the others passed (one bulk UPDATE, no worker)."""
    from sqlalchemy import text

    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    run_id = launch_test_run(
        ({"id": i} for i in range(n)),
        executor="benchmarks.targets:noop",
        name="diff-bench",
        organization_id=ORG,
        options={"max_retries": 0},
    )
    with db.begin() as conn:
        conn.execute(text(STORE_OUTCOMES), {"run_id": run_id, "modulo": modulo, "rest": rest})
    with db.begin() as conn:
        conn.execute(text(FINISH_RUN), {"run_id": run_id})
        conn.exec_driver_sql("ANALYZE rhesis.test_results")
    return run_id


def one_size(url: str, n: int, trials: int) -> None:
    """Make run A (1 test in 200 fails), B (1 in 100 others fails) and C (every test
    fails) of *n* tests; time ``diff A B`` (--json and text) and ``diff A C --json``."""
    t0 = time.perf_counter()
    run_a, run_b, run_c = make_run(n, 200, 2), make_run(n, 100, 1), make_run(n, 1, 0)
    regressions, fixes = len(range(1, n, 100)), len(range(2, n, 200))
    print(
        f"{n:,} tests per run: made 3 runs in {time.perf_counter() - t0:.1f} s; A to B: "
        f"{regressions:,} regressions, {fixes:,} fixes; A to C: {n - fixes:,} regressions"
    )
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as text_out:
        for trial in range(1, trials + 1):
            wall, rss, code = timed_command(url, ["diff", run_a, run_b, "--json"], None)
            assert code == 1, f"diff --json exited {code}, expected 1 (regressions)"
            print(
                f"  diff A B --json > /dev/null, trial {trial}: {wall:6.2f} s  "
                f"peak RSS {rss:6.1f} MiB"
            )
        wall, rss, code = timed_command(url, ["diff", run_a, run_b], text_out.name)
        assert code == 1, f"diff exited {code}, expected 1 (regressions)"
        said = text_out.read()
        assert f"B against A: {regressions} regressions, {fixes} fixes," in said, said[:2000]
        print(f"  diff A B (text):                       {wall:6.2f} s  peak RSS {rss:6.1f} MiB")
        wall, rss, code = timed_command(url, ["diff", run_a, run_b, "--json", "--org", ORG], None)
        assert code == 1, f"diff --org exited {code}, expected 1 (regressions)"
        print(f"  diff A B --json --org (a tenant):      {wall:6.2f} s  peak RSS {rss:6.1f} MiB")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as json_out:
        wall, rss, code = timed_command(url, ["diff", run_a, run_c, "--json"], json_out.name)
        assert code == 1, f"diff --json exited {code}, expected 1 (regressions)"
        size_mib = os.path.getsize(json_out.name) / 2**20
        counts = json.load(json_out)["counts"]
        assert counts["regression"] == n - fixes, counts
        print(
            f"  diff A C --json (every test listed):   {wall:6.2f} s  peak RSS {rss:6.1f} MiB "
            f"({size_mib:.1f} MiB of JSON)"
        )


#: Runs ARGV[2:] with stdout to ARGV[1] and prints "wall_s maxrss_kib exit_code". Linux
#: hands a forked child its parent's peak RSS (ru_maxrss survives fork and exec): a command
#: started straight from this process, which made two big runs, would report this
#: process's peak (84 MiB against 68 here). Started from this small process instead, the
#: figure is the command's own.
SPAWN = """
import os, subprocess, sys, time
with open(sys.argv[1], "w") as out:
    t0 = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=out, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed_command(url: str, argv: list[str], stdout_path: str | None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of ``rhesis-pipeline ARGV`` as a child
    process (of :data:`SPAWN`), its stdout to *stdout_path* (None: /dev/null)."""
    script = str(Path(sys.executable).parent / "rhesis-pipeline")
    said = subprocess.run(
        [sys.executable, "-c", SPAWN, stdout_path or os.devnull, script, *argv],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(said[0]), int(said[1]) / 1024, int(said[2])  # ru_maxrss: KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if min(args.sizes) < 200 or args.trials < 1:
        parser.error("--sizes must be at least 200 and --trials at least 1")

    with fresh_database() as (url, where):
        print(f"machine: {machine()}; database: {where}")
        wall, rss, _ = timed_command(url, ["check"], None)
        print(f"rhesis-pipeline check (baseline):       {wall:6.2f} s  peak RSS {rss:6.1f} MiB")
        for n in args.sizes:
            one_size(url, n, args.trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
