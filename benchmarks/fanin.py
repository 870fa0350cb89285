"""Fan-out/fan-in benchmark: runs of N no-op tests on 2 worker processes, end to end.

    python benchmarks/fanin.py [--sizes 1000 10000 100000] [--trials 3] [--processes 2]
                               [--threads 12] [--latency-runs 20] [--backlog 100000]

Per run: the time to submit it (streamed, one transaction), the time from the start of
the submission to the run's completion (its finished_at, set by the callback), tests per
second, the callback latency (from the commit of the run's last outcome to the callback
finishing the run), and the database's cost per test:

* commits: the delta of ``xact_commit`` (pg_stat_database) of the benchmark's database,
  read before the submission and 11 s after the callback — Postgres 15 publishes a
  backend's counts at most once a second, and those of a backend gone idle (the workers'
  pooled connections at the end of a run) only 10 s later — minus the benchmark's own
  transactions (its polls of the run, its reads) and the commits the idle workers make
  (polls, heartbeats: their rate is measured once, before the first size) during the
  seconds around the run that the two reads span. Everything the workers did for the run
  counts: claims, outcomes, heartbeats, the callback.
* WAL bytes: the delta of ``pg_current_wal_lsn()``, which is the whole server's (on a
  server shared with other work it includes theirs: an upper bound), and the WAL of this
  database's statements (pg_stat_statements' wal_bytes, when the server preloads it:
  everything but the commit records, some 40 bytes per commit).

Runs of every size are repeated ``--trials`` times; a summary gives the median
tests/s, submission rate, commits and WAL per test per size, and each size's time per
test relative to 10,000 (flat cost: within 15 %).

Then the callback latency (p50/p95) over ``--latency-runs`` runs of 20 tests, alone and
with ``--backlog`` messages of another run waiting on a queue that no worker reads (so
they stay there): a claim on the callback queue must not walk them. ``--wal-breakdown N``
ends with one more run of N tests and its WAL by record type (pg_walinspect, which reads
the whole server's WAL: run it on a quiet server).

``--tracing`` measures instead the cost of tracing (OpenTelemetry): the same runs with
tracing off and on, exporting to a local OTLP/HTTP receiver (benchmarks/tracing_cost.py).

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database. Targets (issue #13; 2 worker processes on a 2-core machine): >= 3,000
tests/s for 10,000 and 100,000 tests; submission >= 50,000 tests/s; <= 0.2 commits and
<= 1 KB of WAL per test; callback p50 <= 10 ms, with the backlog too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from benchmarks import tracing_cost
from benchmarks.common import (
    COUNTER_READ_COMMITS,
    ENABLE_CONTRIB,
    ENABLE_SUPERUSER,
    ENABLE_WAL_KEEP,
    STATS_IDLE_SETTLE_S,
    database_counters,
    fresh_database,
    has_pg_stat_statements,
    idle_commit_rate,
    machine,
    query,
    server,
    server_settings,
    timed_run,
    unavailable,
    why_not,
    workers,
)

#: Messages of another run parked on a queue no worker reads (the backlog of --backlog).
PARK_BACKLOG = """
INSERT INTO dramatiq.queue (message_id, queue_name, "state", mtime, message)
SELECT gen_random_uuid(), 'rhesis-tests-parked', 'queued',
       (now() AT TIME ZONE 'UTC') - interval '1 hour' + g * interval '1 microsecond',
       jsonb_build_object('queue_name', 'rhesis-tests-parked',
                          'actor_name', 'execute_single_test',
                          'args', jsonb_build_array(gen_random_uuid(), 't' || g),
                          'kwargs', '{}'::jsonb, 'options', '{}'::jsonb,
                          'message_id', gen_random_uuid(), 'message_timestamp', 0)
FROM generate_series(1, :n) AS g
"""


WAL_STATS = """
SELECT "resource_manager/record_type" AS kind, count, record_size, fpi_size
FROM pg_get_wal_stats(CAST(%(start)s AS pg_lsn), CAST(%(end)s AS pg_lsn), true)
WHERE count > 0
ORDER BY record_size + fpi_size DESC
LIMIT 15
"""

# The WAL of the range by transaction: the submission is one transaction, the largest;
# the rest is claims, outcomes, acks, the callback and records of no transaction.
WAL_BY_PHASE = """
WITH by_xid AS (
    SELECT xid, sum(record_length + fpi_length) AS bytes
    FROM pg_get_wal_records_info(CAST(%(start)s AS pg_lsn), CAST(%(end)s AS pg_lsn))
    GROUP BY xid
)
SELECT max(bytes) AS submission, sum(bytes) - max(bytes) AS rest FROM by_xid
"""


def wal_breakdown(url: str, n: int) -> None:
    """One run of *n* tests, then its WAL by record type (pg_walinspect: a superuser, and
    the run's WAL still on the server: wal_keep_size). Without them, one "unavailable:"
    line instead."""
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run

    figure = f"WAL of one run of {n:,} tests by record type (--wal-breakdown, pg_walinspect)"
    try:
        query(url, "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    except psycopg2.Error as e:
        why, enable = why_not(e)
        unavailable(figure, why, enable or ENABLE_CONTRIB)
        return
    ((start,),) = query(url, "SELECT pg_current_wal_lsn()")
    run_id = launch_test_run(
        ({"id": i} for i in range(n)), executor="benchmarks.targets:noop", name=f"wal-{n}"
    )
    while not get_run(run_id).finished:
        time.sleep(0.01)
    ((end,),) = query(url, "SELECT pg_current_wal_lsn()")
    # Outcomes commit asynchronously: pg_walinspect reads only WAL already flushed.
    time.sleep(1)
    lsns = {"start": start, "end": end}
    try:
        rows = query(url, WAL_STATS, lsns)
        ((submission, rest),) = query(url, WAL_BY_PHASE, lsns)
    except psycopg2.Error as e:
        why, enable = why_not(e)
        if "removed" in why or "could not read" in why:  # checkpoints recycled its segments
            keep = server_settings(url, ("wal_keep_size",))["wal_keep_size"]
            why, enable = f"{why} (wal_keep_size = {keep})", ENABLE_WAL_KEEP
        unavailable(figure, why, enable or ENABLE_SUPERUSER)
        return
    print(f"WAL of one run of {n:,} tests by record type (bytes per test: records + full pages):")
    for kind, count, record_size, fpi_size in rows:
        print(
            f"  {kind:<34} {count / n:6.2f}/test {record_size / n:7.0f} B "
            f"+ {fpi_size / n:6.0f} B full-page images"
        )
    print(
        f"  by phase: submission (one transaction) {submission / n:,.0f} B/test, "
        f"the rest (claims, outcomes, acks, callback) {rest / n:,.0f} B/test"
    )


def run_once(
    url: str, n: int, *, idle_rate: float | None = None, timeout_s: float = 900
) -> dict[str, Any]:
    """One run of *n* no-op tests. With *idle_rate* (commits/s of the idle workers), also
    its database cost: the counters are read before the submission and once the
    statistics of every backend are published after the callback (STATS_IDLE_SETTLE_S),
    minus the benchmark's own transactions (its polls, its read of the counters) and the
    idle commits of the seconds around the run that the two reads also span."""
    before = database_counters(url) if idle_rate is not None else None
    timed = timed_run(url, n, timeout_s=timeout_s)
    run = timed.run
    result = {
        "n": n,
        "submit_s": timed.submit_s,
        "e2e_s": timed.e2e_s,
        "tests_per_s": n / timed.e2e_s,
        "callback_latency_ms": (run.summary or {}).get("callback_latency_ms"),
        "commits_per_test": float("nan"),  # not measured without idle_rate
        "wal_per_test": float("nan"),
        "statement_wal_per_test": float("nan"),
        "checkpoints": "",
    }
    if before is not None and idle_rate is not None:
        after = database_counters(url, settle_s=STATS_IDLE_SETTLE_S)
        assert run.finished_at is not None  # timed_run checked it
        idle_s = (timed.started - before.at) + (after.at - run.finished_at.timestamp())
        own = timed.polls + COUNTER_READ_COMMITS + 1  # + get_run's transaction
        commits = after.commits - before.commits - own - idle_rate * idle_s
        result["commits_per_test"] = commits / n
        result["wal_per_test"] = (after.wal_bytes - before.wal_bytes) / n
        evicted = after.evictions != before.evictions
        result["statement_wal_per_test"] = (
            (after.statement_wal - (before.statement_wal or 0)) / n
            if after.statement_wal is not None and not evicted
            else float("nan")  # not measured, or entries evicted meanwhile: unknown
        )
        result["checkpoints"] = str(after.checkpoints - before.checkpoints)
    return result


def latencies(url: str, runs: int) -> str:
    values = sorted(run_once(url, 20)["callback_latency_ms"] for _ in range(runs))
    p95 = (
        statistics.quantiles(values, n=20, method="inclusive")[18]
        if len(values) >= 2
        else values[0]
    )
    return f"p50 {statistics.median(values):.1f} ms, p95 {p95:.1f} ms, max {values[-1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="run sizes (default: 1000 10000 100000; with --tracing 1000 10000)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="tracing off vs on (OTLP to a local receiver): its cost per test",
    )
    parser.add_argument("--trials", type=int, default=3, help="trials of each size")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--no-counters", action="store_true", help="skip commits and WAL (each run waits 12 s)"
    )
    parser.add_argument(
        "--wal-breakdown",
        type=int,
        default=0,
        metavar="N",
        help="end with a run of N tests and its WAL by record type (pg_walinspect)",
    )
    args = parser.parse_args()
    if args.sizes is None:
        args.sizes = [1000, 10000] if args.tracing else [1000, 10000, 100000]
    if min(args.sizes) < 1 or args.trials < 1 or args.latency_runs < 1 or args.backlog < 0:
        parser.error("--sizes, --trials and --latency-runs must be positive, --backlog >= 0")

    if args.tracing:
        with fresh_database() as (url, where):
            print(f"machine: {machine()}")
            print(f"database: {where}")
            print(server(url))
            return tracing_cost.main(url, args)
    with (
        fresh_database() as (url, where),
        workers(url, processes=args.processes, threads=args.threads),
    ):
        from sqlalchemy import text

        from rhesis_pipeline.storage import db

        print(f"machine: {machine()}")
        print(f"database: {where}; workers: {args.processes} processes x {args.threads} threads")
        print(server(url))
        run_once(url, 1000)  # warm-up: pools, imports, prepared statements
        statements = has_pg_stat_statements(
            url, "WAL of this database's statements (column db stmts)"
        )
        idle_rate = None if args.no_counters else idle_commit_rate(url)
        if idle_rate is not None:
            print(
                f"idle workers: {idle_rate:.1f} commits/s (subtracted for the seconds around "
                "each run that its counter reads span)"
            )
        print(
            "WAL B/test: server = pg_current_wal_lsn() delta (every database of the server: "
            "includes others' work on a shared one); db stmts = WAL of this database's "
            "statements (pg_stat_statements; "
            + ("without commit records; nan if entries were evicted meanwhile)"
               if statements else "unavailable here: nan)")
            + "; ckpt = the server's checkpoints during the run (after each, the first change"
            " of a page logs the whole page: more WAL)"
        )  # fmt: skip
        header = (
            f"{'tests':>7} {'trial':>5} {'submit s':>9} {'end-to-end s':>13} {'tests/s':>8} "
            f"{'commits/test':>13} {'WAL B/test':>11} {'db stmts':>9} {'ckpt':>5} "
            f"{'callback ms':>12}"
        )
        print(header)
        by_size: dict[int, list[dict[str, Any]]] = {}
        for n in args.sizes:
            for trial in range(1, args.trials + 1):
                r = run_once(url, n, idle_rate=idle_rate)
                by_size.setdefault(n, []).append(r)
                print(
                    f"{n:>7} {trial:>5} {r['submit_s']:>9.3f} {r['e2e_s']:>13.2f} "
                    f"{r['tests_per_s']:>8.0f} {r['commits_per_test']:>13.3f} "
                    f"{r['wal_per_test']:>11.0f} {r['statement_wal_per_test']:>9.0f} "
                    f"{r['checkpoints']:>5} "
                    f"{r['callback_latency_ms']:>12.1f}",
                    flush=True,
                )
        print("summary (median of trials):")
        reference = by_size.get(10_000)
        ref_cost = statistics.median(r["e2e_s"] / r["n"] for r in reference) if reference else None
        for n, rows in by_size.items():
            rate = statistics.median(r["tests_per_s"] for r in rows)
            submit = statistics.median(r["n"] / r["submit_s"] for r in rows)
            cost = statistics.median(r["e2e_s"] / r["n"] for r in rows)
            relative = f", cost/test {cost / ref_cost:.2f}x that of 10,000" if ref_cost else ""
            commits = statistics.median(r["commits_per_test"] for r in rows)
            wal = statistics.median(r["wal_per_test"] for r in rows)
            stmt = [r["statement_wal_per_test"] for r in rows]
            stmt = [v for v in stmt if v == v]  # nan: unknown
            wal_db = f" ({statistics.median(stmt):,.0f} B by its statements)" if stmt else ""
            print(
                f"  {n:>7}: {rate:,.0f} tests/s, submission {submit:,.0f} tests/s, "
                f"{commits:.3f} commits/test, {wal:,.0f} B WAL/test{wal_db}{relative}"
            )
        print(f"callback latency over {args.latency_runs} runs of 20 tests: ", end="", flush=True)
        print(latencies(url, args.latency_runs))
        with db.begin() as conn:
            conn.execute(text(PARK_BACKLOG), {"n": args.backlog})
            conn.execute(text("ANALYZE dramatiq.queue"))
        print(
            f"  with {args.backlog:,} messages of another run waiting: "
            f"{latencies(url, args.latency_runs)}"
        )
        if args.wal_breakdown:
            wal_breakdown(url, args.wal_breakdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
