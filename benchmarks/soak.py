"""Soak: sustained submission and execution with retention running; table sizes over time.

    python benchmarks/soak.py [--minutes 10] [--rate 2400] [--run-size 1000]
                              [--retention-s 30] [--every 30]

2 worker processes (12 threads each) execute no-op runs of --run-size tests, submitted
at --rate tests/s (about 80 % of the measured peak by default) by one thread, while
another applies retention every 10 s (finished queue rows and finished runs older than
--retention-s deleted, as ``RHESIS_QUEUE_RETENTION_HOURS`` / ``RHESIS_RUN_RETENTION_HOURS``
would). Every --every seconds it prints the tests finished per second, the backlog, and
for dramatiq.queue, rhesis.claims, rhesis.test_results and rhesis.test_runs: total size,
live and dead tuples, dead/live, and autovacuum runs so far. At the end it compares the
last third with the middle third: stable sizes, and dead/live ratios (target < 20 %).

Dead tuples are removed by the server's autovacuum, per table by the thresholds of
migration 0007; how soon it looks is the server's ``autovacuum_naptime`` (printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, workers

TABLES = ("dramatiq.queue", "rhesis.claims", "rhesis.test_results", "rhesis.test_runs")

TABLE_STATS = """
SELECT s.schemaname || '.' || s.relname, pg_total_relation_size(s.relid), s.n_live_tup,
       s.n_dead_tup, s.autovacuum_count
FROM pg_stat_user_tables s
WHERE s.schemaname || '.' || s.relname = ANY(:tables)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=2400)
    parser.add_argument("--run-size", type=int, default=1000)
    parser.add_argument("--retention-s", type=float, default=30)
    parser.add_argument("--every", type=float, default=30)
    args = parser.parse_args()

    from sqlalchemy import text

    from rhesis_pipeline import db, runs
    from rhesis_pipeline.maintenance import Retention, RetentionConfig

    stop = threading.Event()
    finished_deleted = 0  # tests of runs deleted by retention (their done no longer counts)
    lock = threading.Lock()

    def submit() -> None:
        interval = args.run_size / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            runs.launch_test_run(
                ({"id": i} for i in range(args.run_size)),
                executor="benchmarks.targets:noop",
                options={"max_retries": 0},
            )
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    def retain() -> None:
        nonlocal finished_deleted
        keep = timedelta(seconds=args.retention_s)
        retention = Retention(
            RetentionConfig(
                message_retention=keep,
                run_retention=keep,
                batch_size=5000,
                pause_s=0,
                max_batches=10_000,
            )
        )
        while not stop.wait(10):
            with db.connect() as conn:
                before = conn.execute(
                    text("SELECT COALESCE(sum(done), 0) FROM rhesis.test_runs")
                ).scalar()
            retention.run_once()
            with db.connect() as conn:
                after = conn.execute(
                    text("SELECT COALESCE(sum(done), 0) FROM rhesis.test_runs")
                ).scalar()
            with lock:
                # Deleted runs were all finished: what they counted is what disappeared,
                # less what other runs finished meanwhile (an underestimate, never more).
                finished_deleted += max(0, before - after)

    with (
        fresh_database() as (url, where),
        workers(url, processes=2, threads=12, log_name=".soak-workers.log"),
    ):
        with db.connect() as conn:
            naptime = conn.execute(text("SHOW autovacuum_naptime")).scalar()
            autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
        print(f"machine: {machine()}")
        print(
            f"database: {where}; autovacuum {autovacuum}, naptime {naptime}; "
            f"rate {args.rate:g} tests/s in runs of {args.run_size}; retention "
            f"{args.retention_s:g} s"
        )
        threads = [threading.Thread(target=f, daemon=True) for f in (submit, retain)]
        for thread in threads:
            thread.start()
        print(
            f"{'t s':>5} {'done/s':>7} {'backlog':>8}  "
            + "  ".join(f"{t.split('.')[1] + ' MiB,live,dead,d/l,av':>38}" for t in TABLES)
        )
        samples: list[tuple[float, dict]] = []
        started = time.monotonic()
        last_done, last_t = 0, started
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.every)
                with db.connect() as conn:
                    done = conn.execute(
                        text("SELECT COALESCE(sum(done), 0) FROM rhesis.test_runs")
                    ).scalar()
                    backlog = conn.execute(
                        text("SELECT count(*) FROM dramatiq.queue WHERE \"state\" = 'queued'")
                    ).scalar()
                    stats = {
                        name: (size, live, dead, av)
                        for name, size, live, dead, av in conn.execute(
                            text(TABLE_STATS), {"tables": list(TABLES)}
                        )
                    }
                with lock:
                    total = done + finished_deleted
                now = time.monotonic()
                rate = (total - last_done) / (now - last_t)
                last_done, last_t = total, now
                samples.append((now - started, stats))
                cells = []
                for table in TABLES:
                    size, live, dead, av = stats[table]
                    cells.append(
                        f"{size / 2**20:>8.1f},{live:>9},{dead:>8},"
                        f"{dead / max(live, 1):>5.2f},{av:>3}"
                    )
                print(f"{now - started:>5.0f} {rate:>7.0f} {backlog:>8}  " + "  ".join(cells))
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        third = max(1, len(samples) // 3)
        middle, last = samples[third : 2 * third], samples[-third:]
        print("end: size of the last third vs the middle third (median), dead/live:")
        for table in TABLES:
            mid = statistics.median(s[table][0] for _, s in middle) if middle else 0
            end = statistics.median(s[table][0] for _, s in last)
            ratios = [s[table][2] / max(s[table][1], 1) for _, s in last]
            print(
                f"  {table:<22} {mid / 2**20:8.1f} -> {end / 2**20:8.1f} MiB "
                f"({(end / mid - 1) * 100 if mid else 0:+.0f} %); dead/live in the last third "
                f"{min(ratios):.2f}..{max(ratios):.2f}, at the end {ratios[-1]:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
