"""Rescue benchmark: time from SIGKILL of a worker to its messages being consumed again.

    python benchmarks/rescue.py [--trials 3]

Default settings (heartbeat every 5 s, dead after 30 s of silence, or after 15 s when
the worker's liveness lock is gone: its time to reconnect). Two worker instances share a
run of slow tests; one is SIGKILLed while it holds claimed messages; the time is measured
until every one of those messages has been claimed again by the survivor (or finished).
It includes the wait for a free thread on the survivor, which is busy with 2-second
tests. Target: < 30 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, workers


def trial(url: str) -> tuple[float, int]:
    import os
    import signal

    from sqlalchemy import text

    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    with (
        workers(url, processes=1, threads=4) as victim,
        workers(url, processes=1, threads=4, log_name=".survivor.log"),
    ):
        run_id = launch_test_run(
            [{"id": i, "sleep_s": 2} for i in range(60)],
            executor="benchmarks.targets:sleep",
            options={"max_retries": 0},
        )
        with db.connect() as conn:
            victim_worker = None
            deadline = time.monotonic() + 30
            while victim_worker is None and time.monotonic() < deadline:
                victim_worker = conn.execute(
                    text(
                        "SELECT w.id FROM rhesis.workers w JOIN rhesis.claims c "
                        "ON c.worker_id = w.id WHERE w.pid <> :me GROUP BY w.id "
                        "ORDER BY w.started_at LIMIT 1"
                    ),
                    {"me": os.getpid()},
                ).scalar()
                conn.rollback()
                time.sleep(0.05)
        if victim_worker is None:
            raise SystemExit("no worker held a claim within 30 s: see benchmarks/.workers.log")
        os.killpg(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        with db.connect() as conn:
            held = [
                r[0]
                for r in conn.execute(
                    text("SELECT message_id FROM rhesis.claims WHERE worker_id = :w"),
                    {"w": victim_worker},
                )
            ]
            conn.rollback()
            while True:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM dramatiq.queue q LEFT JOIN rhesis.claims c "
                        "ON c.message_id = q.message_id WHERE q.message_id = ANY(:ids) "
                        "AND q.state <> 'done' AND (c.worker_id IS NULL OR c.worker_id = :w)"
                    ),
                    {"ids": held, "w": victim_worker},
                ).scalar()
                conn.rollback()
                if left == 0:
                    break
                if time.monotonic() - killed > 120:
                    raise SystemExit("orphans not consumed again within 120 s")
                time.sleep(0.05)
        elapsed = time.monotonic() - killed
        while not get_run(run_id).finished:
            time.sleep(0.2)
        return elapsed, len(held)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    with fresh_database() as (url, where):
        print(f"machine: {machine()}")
        print(f"database: {where}; defaults: heartbeat 5 s, timeout 30 s, lock grace 15 s")
        times = []
        for i in range(args.trials):
            elapsed, n = trial(url)
            times.append(elapsed)
            print(
                f"trial {i + 1}: {n} claimed messages of the killed worker consumed again "
                f"{elapsed:.2f} s after SIGKILL"
            )
        print(
            f"SIGKILL -> orphans consumed again: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s (target < 30 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
