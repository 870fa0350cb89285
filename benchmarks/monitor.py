"""How long rhesis-monitor's operations take on a database with a realistic backlog.

    python benchmarks/monitor.py [--done-messages 1000000] [--finished-runs 100000]

Fills a fresh database with finished queue rows (the retention window's worth) and
finished runs, then submits two real runs (10,000 and 20,000 tests, no worker), and
times, through the library functions the CLI calls:

* status() (what `status` reads), check_health(), find_stuck_runs(0), list_workers()
  — median of 5;
* revoke_runs() of the 10,000-test run (one transaction);
* clean_queues() of the 20,000 waiting messages of the other run (one transaction);
* the commands `rhesis-monitor status` and `rhesis-monitor health` as an operator runs
  them (a new process each: Python's start-up and imports included; `rhesis-monitor
  --help` gives that fixed part) — median of 3.

Target (issue #13): status and health < 200 ms with 1,000,000 finished queue rows.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine

FILL_MESSAGES = """
INSERT INTO dramatiq.queue (message_id, queue_name, "state", mtime, message)
SELECT gen_random_uuid(), 'rhesis-tests', 'done',
       (now() AT TIME ZONE 'UTC') - random() * interval '24 hours',
       jsonb_build_object('actor_name', 'execute_single_test',
                          'args', jsonb_build_array(gen_random_uuid(), 't' || g))
FROM generate_series(1, :n) AS g
"""

FILL_RUNS = """
INSERT INTO rhesis.test_runs (id, name, status, executor, total, done, passed, created_at,
                              started_at, finished_at)
SELECT gen_random_uuid(), 'old-' || g, 'COMPLETED', '{"type": "python"}', 10, 10, 10,
       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
FROM generate_series(1, :n) AS g
"""


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def command(url: str, *args: str) -> None:
    exe = shutil.which("rhesis-monitor") or str(Path(sys.executable).parent / "rhesis-monitor")
    subprocess.run(
        [exe, *args],
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # health exits 1 here (no live worker): its time is what counts
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--done-messages", type=int, default=1_000_000)
    parser.add_argument("--finished-runs", type=int, default=100_000)
    args = parser.parse_args()

    from sqlalchemy import text

    from rhesis_pipeline import monitor
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    with fresh_database() as (url, where):
        print(f"machine: {machine()}; database: {where}")
        started = time.perf_counter()
        with db.begin() as conn:
            conn.execute(text(FILL_MESSAGES), {"n": args.done_messages})
            conn.execute(text(FILL_RUNS), {"n": args.finished_runs})
            conn.exec_driver_sql("ANALYZE")
        big = launch_test_run(
            [{"id": i} for i in range(10_000)], executor="benchmarks.targets:noop", name="big"
        )
        other = launch_test_run(
            [{"id": i} for i in range(20_000)], executor="benchmarks.targets:noop", name="other"
        )
        print(
            f"filled {args.done_messages:,} done messages, {args.finished_runs:,} finished runs, "
            f"and 2 unfinished runs (10,000 + 20,000 waiting tests) in "
            f"{time.perf_counter() - started:.1f}s"
        )
        reads = {
            "status()": lambda: monitor.status(),
            "check_health()": lambda: monitor.check_health(),
            "find_stuck_runs(0)": lambda: monitor.find_stuck_runs(0),
            "list_workers()": lambda: monitor.list_workers(),
        }
        for name, fn in reads.items():
            print(f"{name:<28} {timed(fn, 5) * 1000:8.1f} ms (median of 5)")
        for args_ in (["--help"], ["status"], ["health"]):
            name = "rhesis-monitor " + " ".join(args_)
            took = timed(functools.partial(command, url, *args_), 3)
            print(f"{name:<28} {took * 1000:8.1f} ms (a process, median of 3)")
        revoked: list[monitor.RevokeOutcome] = []
        revoke_s = timed(lambda: revoked.extend(monitor.revoke_runs([big])))
        assert revoked[0].cancelled_tests == 10_000, revoked
        print(f"{'revoke_runs(10,000 tests)':<28} {revoke_s * 1000:8.1f} ms")
        cleaned: list[monitor.CleanResult] = []
        clean_s = timed(lambda: cleaned.append(monitor.clean_queues("rhesis-tests")))
        assert cleaned[0].deleted == 20_000 and cleaned[0].cancelled_runs == [other], cleaned
        print(f"{'clean_queues(20,000 msgs)':<28} {clean_s * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
