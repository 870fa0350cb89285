"""Soak: submission and execution at once for minutes, retention running; do the tables
stay the same size?

    python benchmarks/soak.py [--minutes 10] [--rate TESTS_PER_S] [--run-size 1000]
                              [--retention-s 60] [--report-s 30] [--processes 2]
                              [--threads 12] [--tolerance 20]

Starts 2 worker processes and the periodiq scheduler (the sweep every minute) with a
short retention (``RHESIS_QUEUE_RETENTION_HOURS`` and ``RHESIS_RUN_RETENTION_HOURS`` of
--retention-s: done queue rows and finished runs with their results are purged once
that old), then submits a run of --run-size no-op tests every run-size/rate seconds for
--minutes. Without --rate, calibration runs of 10,000 tests measure the peak (median of
3) and the soak runs at 80 % of it. A backlog that grows from the middle third to the last
means the rate was above what the workers sustain with retention running.

Every --report-s it prints the tests/s completed over the interval, the backlog (tests
of unfinished runs), and for dramatiq.queue, rhesis.claims, rhesis.test_results and
rhesis.test_runs: the total size (pg_total_relation_size), live and dead tuples
(n_live_tup, n_dead_tup) and the autovacuum count. At the end: whether each table's size
was stable (mean of the last third of the reports within --tolerance % of the middle
third's), the dead/live ratio at the end (target, issue #13: < 20 %) and whether the
dead tuples (mean of the middle third -> mean of the last) grow.

The dead/live ratio is churn, not bloat, for a table whose live rows are only the work in
flight (the queue, the claims, the runs of the soak's short retention): every row it ever
held dies within seconds, so a few hundred live rows face the thousands that died since
the last autovacuum. For those the size and the dead count over time tell whether vacuum
keeps up; the ratio is meaningful for rhesis.test_results, whose live rows accumulate.

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    ENABLE_AUTOVACUUM,
    REPO,
    TABLES,
    TableStats,
    fresh_database,
    machine,
    query,
    scheduler,
    server,
    server_settings,
    submit_noop,
    table_stats,
    timed_run,
    unavailable,
    workers,
)

#: What autovacuum must run for (the sizes and dead tuples of each report are printed anyway).
VACUUM_FIGURES = "size stability, dead/live ratios and dead-tuple growth of the tables"

BACKLOG = "SELECT coalesce(sum(total - done), 0) FROM rhesis.test_runs WHERE finished_at IS NULL"


def short(name: str) -> str:
    return name.split(".", 1)[1]


def report_line(elapsed: float, rate: float, backlog: int, stats: dict[str, TableStats]) -> str:
    parts = [f"{elapsed:>5.0f}s {rate:>7,.0f} tests/s backlog {backlog:>7,}"]
    for name in TABLES:
        t = stats.get(name)
        if t is None:
            continue
        parts.append(
            f"{short(name)} {t.bytes / 2**20:.1f} MiB {t.live:,}/{t.dead:,} ({t.dead_ratio:.0%})"
            f" av{t.autovacuums}"
        )
    return " | ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="tests/s (default: 80 %% of a calibration)")
    parser.add_argument("--run-size", type=int, default=1000)
    parser.add_argument("--retention-s", type=float, default=60.0)
    parser.add_argument("--report-s", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--tolerance", type=float, default=20.0, help="size stability, %%")
    args = parser.parse_args()
    if args.minutes <= 0 or args.run_size < 1 or args.retention_s <= 0 or args.report_s <= 0:
        parser.error("--minutes, --run-size, --retention-s and --report-s must be positive")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")

    hours = f"{args.retention_s / 3600:.6f}"
    env = {"RHESIS_QUEUE_RETENTION_HOURS": hours, "RHESIS_RUN_RETENTION_HOURS": hours}
    with (
        fresh_database() as (url, where),
        workers(url, processes=args.processes, threads=args.threads, env=env),
        scheduler(url, env=env),
    ):
        print(f"machine: {machine()}")
        print(
            f"database: {where}; workers: {args.processes} processes x {args.threads} threads; "
            f"retention {args.retention_s:.0f} s (queue rows, runs), sweep every minute"
        )
        print(server(url))
        autovacuum = server_settings(url, ("autovacuum",))["autovacuum"] == "on"
        if not autovacuum:
            unavailable(VACUUM_FIGURES, "autovacuum = off on this server", ENABLE_AUTOVACUUM)
        timed_run(url, 1000)  # warm-up
        rate = args.rate
        if rate is None:  # one run is noisy on a shared machine: the median of 3
            peak = statistics.median(10_000 / timed_run(url, 10_000).e2e_s for _ in range(3))
            rate = 0.8 * peak
            print(
                f"calibration: 10,000 tests at {peak:,.0f} tests/s (median of 3); "
                f"soak at {rate:,.0f} tests/s"
            )
        interval = args.run_size / rate
        print(f"submitting a run of {args.run_size:,} tests every {interval:.2f} s")

        started = time.monotonic()
        end = started + args.minutes * 60
        next_submit = started
        next_report = started + args.report_s
        submitted = 0
        last_done, last_at = 0, started
        history: list[dict[str, TableStats]] = []
        backlogs: list[int] = []
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_submit:
                submit_noop(args.run_size, "soak")
                submitted += args.run_size
                next_submit += interval
                if next_submit < now:  # the submission itself fell behind: do not burst
                    next_submit = now
            if now >= next_report:
                backlog = int(query(url, BACKLOG)[0][0])
                done = submitted - backlog
                achieved = (done - last_done) / (now - last_at)
                last_done, last_at = done, now
                stats = table_stats(url)
                history.append(stats)
                backlogs.append(backlog)
                print(report_line(now - started, achieved, backlog, stats), flush=True)
                next_report += args.report_s
            time.sleep(max(0.0, min(next_submit, next_report, end) - time.monotonic()))

        elapsed = time.monotonic() - started
        backlog = int(query(url, BACKLOG)[0][0])
        print(
            f"submitted {submitted:,} tests in {elapsed:.0f} s ({submitted / elapsed:,.0f}/s); "
            f"completed {submitted - backlog:,} ({(submitted - backlog) / elapsed:,.0f}/s); "
            f"backlog at the end {backlog:,}"
        )
        summarize(history, backlogs, args.tolerance, autovacuum=autovacuum)
    retention = [
        line.split("retention: ", 1)[1].strip()
        for line in (REPO / "benchmarks" / ".workers.log").read_text(errors="replace").splitlines()
        if "retention: deleted" in line
    ]
    print(f"retention runs: {len(retention)}" + (f"; last: {retention[-1]}" if retention else ""))
    return 0


def summarize(
    history: list[dict[str, TableStats]],
    backlogs: list[int],
    tolerance: float,
    *,
    autovacuum: bool = True,
) -> None:
    if len(history) < 3:
        print("too few reports to judge stability (run longer or report more often)")
        return
    third = len(history) // 3
    middle, last = history[third : 2 * third], history[-third:]
    if not autovacuum:  # without it every table grows: no verdict on vacuum keeping up
        print("tables: no verdict, autovacuum is off (the unavailable: line at the top)")
    for name in TABLES if autovacuum else ():
        if name not in history[-1]:
            continue
        mid_size = statistics.mean(s[name].bytes for s in middle if name in s)
        last_size = statistics.mean(s[name].bytes for s in last if name in s)
        change = (last_size - mid_size) / mid_size * 100 if mid_size else 0.0
        final = history[-1][name]
        worst = max(s[name].dead_ratio for s in last if name in s)
        mid_dead = statistics.mean(s[name].dead for s in middle if name in s)
        last_dead = statistics.mean(s[name].dead for s in last if name in s)
        dead_growing = last_dead > mid_dead * (1 + tolerance / 100) + 1000
        print(
            f"{name:<20} size {mid_size / 2**20:7.1f} -> {last_size / 2**20:7.1f} MiB "
            f"({change:+.0f} %: {'stable' if abs(change) <= tolerance else 'NOT stable'}); "
            f"dead/live at the end {final.dead_ratio:.0%}, worst of the last third "
            f"{worst:.0%} ({'ok' if worst < 0.2 else 'over 20 %'}); "
            f"dead tuples {mid_dead:,.0f} -> {last_dead:,.0f} "
            f"({'growing' if dead_growing else 'not growing'}); "
            f"autovacuums {final.autovacuums}"
        )
    mid_b = statistics.mean(backlogs[third : 2 * third])
    last_b = statistics.mean(backlogs[-third:])
    growing = last_b > max(2 * mid_b, 5_000)
    print(
        f"backlog: mean {mid_b:,.0f} (middle third) -> {last_b:,.0f} (last third)"
        + (": growing, the rate is above what the workers sustain" if growing else "")
    )


if __name__ == "__main__":
    raise SystemExit(main())
