"""Fan-out/fan-in benchmark: N no-op tests on 2 worker processes.

    python benchmarks/fanin.py [--sizes 5000 10000] [--processes 2] [--threads 8]

Prints, per size: the time to submit the run (one transaction), the time from the start
of the submission to the run's completion (its finished_at, set by the callback), tests
per second, and the callback latency (from the commit of the last member's outcome to
the callback finishing the run). Then the callback latency p50/p95 over --latency-runs
small runs. Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes
and drops its own database.

Targets (2-core machine): 10,000 submitted in < 0.5 s; 5,000 end to end in < 5 s;
callback latency p50 < 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, workers


def run_once(n: int, *, poll_s: float = 0.01, timeout_s: float = 300) -> dict:
    from rhesis_pipeline import runs

    tests = [{"id": i} for i in range(n)]
    t0 = time.perf_counter()
    wall0 = time.time()
    run_id = runs.launch_test_run(
        tests, executor="benchmarks.targets:noop", name=f"bench-{n}", options={"max_retries": 0}
    )
    submit_s = time.perf_counter() - t0
    while not runs.get_progress(run_id).finished:
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(
                f"run of {n} not finished after {timeout_s}s: "
                f"{runs.get_progress(run_id)}; see benchmarks/.workers.log"
            )
        time.sleep(poll_s)
    run = runs.get_run(run_id)
    assert run.status == "COMPLETED" and run.passed == n and run.collected_count == 1, run
    e2e_s = run.finished_at.timestamp() - wall0
    return {
        "n": n,
        "submit_s": submit_s,
        "e2e_s": e2e_s,
        "tests_per_s": n / e2e_s,
        "callback_latency_ms": (run.summary or {}).get("callback_latency_ms"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()

    with (
        fresh_database() as (url, where),
        workers(url, processes=args.processes, threads=args.threads),
    ):
        print(f"machine: {machine()}")
        print(f"database: {where}; workers: {args.processes} processes x {args.threads} threads")
        run_once(200)  # warm-up: pools, imports, caches
        print(
            f"{'tests':>7} {'submit s':>9} {'end-to-end s':>13} {'tests/s':>8} {'callback ms':>12}"
        )
        for n in args.sizes:
            r = run_once(n)
            print(
                f"{r['n']:>7} {r['submit_s']:>9.3f} {r['e2e_s']:>13.2f} "
                f"{r['tests_per_s']:>8.0f} {r['callback_latency_ms']:>12.1f}"
            )
        latencies = [run_once(20)["callback_latency_ms"] for _ in range(args.latency_runs)]
        q = statistics.quantiles(latencies, n=20)
        print(
            f"callback latency over {len(latencies)} runs of 20 tests: "
            f"p50 {statistics.median(latencies):.1f} ms, p95 {q[18]:.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
