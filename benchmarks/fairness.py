"""Fairness benchmark: a small run of one organization beside another's backlog, and
what fair claims cost a single-tenant workload.

    python benchmarks/fairness.py [--trials 3] [--size 10000] [--backlog 50000]

1. Organization A launches --backlog no-op tests; 2 s later organization B launches 20.
   Printed: the time from B's launch to B's run finished (target < 5 s) and how much of
   A was done then, with fair claims (RHESIS_FAIR_CLAIMS=on, the default) and without.
2. One organization, --size no-op tests end to end, fair claims on and off, alternating,
   --trials each: tests/s and the cost of fairness (target < 10 %).

2 worker processes x 12 threads (as benchmarks/fanin.py). Uses BENCH_DATABASE_URL, else
the local server, else an embedded one; makes and drops its own database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, server, workers
from benchmarks.fanin import run_once


def beside_backlog(url: str, backlog: int, fair: bool) -> tuple[float, int]:
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run

    os.environ["RHESIS_FAIR_CLAIMS"] = "on" if fair else "off"
    with workers(url, processes=2, threads=12):
        big = launch_test_run(
            [{"id": i} for i in range(backlog)],
            executor="benchmarks.targets:noop",
            organization_id="org-a",
            options={"max_retries": 0},
        )
        time.sleep(2)  # the scenario: B arrives 2 s after A
        launched = time.monotonic()
        small = launch_test_run(
            [{"id": i} for i in range(20)],
            executor="benchmarks.targets:noop",
            organization_id="org-b",
            options={"max_retries": 0},
        )
        while not get_run(small).finished:
            if time.monotonic() - launched > 300:
                raise SystemExit("B's run did not finish within 300 s")
            time.sleep(0.01)
        elapsed = time.monotonic() - launched
        a_done = get_run(big).done
        from rhesis_pipeline.monitor import revoke_runs

        revoke_runs([big])  # stop A: the next trial starts from an empty queue
    return elapsed, a_done


def single_tenant(url: str, size: int, fair: bool) -> float:
    os.environ["RHESIS_FAIR_CLAIMS"] = "on" if fair else "off"
    with workers(url, processes=2, threads=12):
        run_once(url, 200)  # warm-up
        tests_per_s: float = run_once(url, size)["tests_per_s"]
        return tests_per_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--backlog", type=int, default=50_000)
    args = parser.parse_args()
    with fresh_database() as (url, where):
        print(f"machine: {machine()}")
        print(f"database: {where}; workers: 2 processes x 12 threads")
        print(server(url))
        for fair in (True, False):
            elapsed, a_done = beside_backlog(url, args.backlog, fair)
            no_contest = "; A finished before B: no contest, raise --backlog"
            print(
                f"fair claims {'on ' if fair else 'off'}: B's 20 tests finished "
                f"{elapsed:.2f} s after launch (A: {a_done:,} of {args.backlog:,} done"
                f"{no_contest if a_done >= args.backlog else ''})"
            )
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.trials):
            for fair in (False, True):
                rates[fair].append(single_tenant(url, args.size, fair))
        for fair in (False, True):
            print(
                f"one organization, {args.size:,} tests, fair claims {'on ' if fair else 'off'}: "
                + ", ".join(f"{r:.0f}" for r in rates[fair])
                + f" tests/s (median {statistics.median(rates[fair]):.0f})"
            )
        cost = 1 - statistics.median(rates[True]) / statistics.median(rates[False])
        print(f"cost of fairness on one organization: {cost:.1%} (target < 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
