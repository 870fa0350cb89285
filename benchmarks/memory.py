"""Worker memory with a small and a huge backlog: RSS of each worker process.

    python benchmarks/memory.py [--sizes 1000 1000000] [--seconds 20] [--processes 2]
                                [--threads 12]

Starts the worker processes, then for each size submits a run of that many no-op tests
and samples every worker process's resident set (VmRSS of /proc/PID/status) every 0.25 s
for --seconds while the workers consume it (a run of 1,000 is drained within the window;
one of 1,000,000 keeps ~all its messages waiting throughout). Prints each worker
process's RSS idle (before the first run), the peak and the last sample of each window,
the growth of the submitting process's peak RSS (the tests are streamed from a
generator), and the ratio of the peak with the largest size to that with the smallest
(target, issue #13: flat, within 20 %: the consumer must not load the waiting messages
into memory).

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    fresh_database,
    machine,
    rss_mib,
    submit_noop,
    worker_pids,
    workers,
)


def sample(pids: list[int], seconds: float, every_s: float = 0.25) -> dict[int, list[float]]:
    samples: dict[int, list[float]] = {pid: [] for pid in pids}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in pids:
            samples[pid].append(rss_mib(pid))
        time.sleep(every_s)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.seconds <= 0:
        parser.error("--sizes and --seconds must be positive")

    from rhesis_pipeline.runs.read import get_run

    with (
        fresh_database() as (url, where),
        workers(url, processes=args.processes, threads=args.threads) as proc,
    ):
        print(f"machine: {machine()}")
        print(f"database: {where}; workers: {args.processes} processes x {args.threads} threads")
        pids = worker_pids(proc, args.processes)
        idle = {pid: rss_mib(pid) for pid in pids}
        print("idle: " + ", ".join(f"pid {pid} {mib:.1f} MiB" for pid, mib in idle.items()))
        peaks: dict[int, float] = {}
        for n in args.sizes:
            started = time.perf_counter()
            submitter_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            run_id = submit_noop(n, f"memory-{n}")  # streamed from a generator
            submit_s = time.perf_counter() - started
            submitter_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - submitter_before
            samples = sample(pids, args.seconds)
            progress = get_run(run_id)
            peaks[n] = max(max(v) for v in samples.values())
            print(
                f"{n:>9,} tests submitted in {submit_s:.1f} s (submitter's peak RSS "
                f"+{submitter_growth / 1024:.0f} MiB); after {args.seconds:.0f} s "
                f"{progress.done:,} done, {n - progress.done:,} waiting; RSS "
                + ", ".join(
                    f"pid {pid} peak {max(v):.1f} MiB last {v[-1]:.1f} MiB"
                    for pid, v in samples.items()
                ),
                flush=True,
            )
        small, large = min(peaks), max(peaks)
        ratio = peaks[large] / peaks[small]
        verdict = "flat" if abs(ratio - 1) <= 0.2 else "NOT flat"
        print(
            f"peak worker RSS: {peaks[small]:.1f} MiB with {small:,} tests, "
            f"{peaks[large]:.1f} MiB with {large:,}: ratio {ratio:.2f} ({verdict}, target ±20 %)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
