"""A worker's resident memory with 1,000 and with 1,000,000 messages waiting.

    python benchmarks/memory.py [--small 1000] [--large 1000000] [--seconds 20]

Starts 2 worker processes, submits a run of --small no-op tests and samples the workers'
RSS (VmRSS of /proc/PID/status) while they drain it; then submits a run of --large
tests (streamed from a generator; the submitting process's own RSS growth is printed
too) and samples the workers' RSS for --seconds while they work through that backlog.
A consumer holds at most its prefetch in memory, whatever waits in the queue: the two
figures should be the same (target: within 20 %).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, workers


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def sample(pids: list[int], seconds: float) -> float:
    """The largest RSS of any of *pids* over *seconds* (sampled every 0.2 s), MiB."""
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, *(rss_mib(p) for p in pids))
        time.sleep(0.2)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    from rhesis_pipeline import runs

    with fresh_database() as (url, where), workers(url, processes=2, threads=12) as proc:
        print(f"machine: {machine()}")
        print(f"database: {where}; workers: 2 processes x 12 threads")
        pids = children(proc.pid)
        small = runs.launch_test_run(
            ({"id": i} for i in range(args.small)), executor="benchmarks.targets:noop"
        )
        small_rss = sample(pids, 3.0)
        assert runs.get_progress(small).finished, "the small run did not finish in 3 s"
        print(f"worker RSS with {args.small:,} waiting: {small_rss:.1f} MiB (peak of 2)")

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        large = runs.launch_test_run(
            ({"id": i} for i in range(args.large)), executor="benchmarks.targets:noop"
        )
        submit_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"submitted {args.large:,} tests from a generator in {submit_s:.1f} s; "
            f"submitting process peak RSS +{after - before:.0f} MiB"
        )
        large_rss = sample(pids, args.seconds)
        progress = runs.get_progress(large)
        print(
            f"worker RSS with {args.large - progress.done:,}..{args.large:,} waiting: "
            f"{large_rss:.1f} MiB (peak of 2 over {args.seconds:g} s)"
        )
        print(f"ratio: {large_rss / small_rss:.3f} (target: 0.8..1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
