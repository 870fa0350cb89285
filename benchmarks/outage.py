"""Database outage benchmark: how long until workers are live again, and how many tests
run twice, when the database goes away under load.

    python benchmarks/outage.py [--trials 3] [--tests 3000]

Default settings (heartbeat every 5 s). Two worker processes with 4 threads each run a
run of short tests (10 ms). Two faults, each in every trial:

* cut: every backend of the database is ended (``pg_terminate_backend``) mid-run;
* restart: a Postgres server the benchmark owns (tests/support/faults.py's OwnedServer,
  pgserver's Postgres 16) is stopped (fast shutdown) for 10 s and started again.

Printed per fault: the time from the database answering again to every worker process
being live with its liveness lock (target: within two heartbeat intervals, 10 s), the
tests executed more than once (target: at most those executing at the fault, 8), and that
every run ended COMPLETED with one callback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine, workers

if TYPE_CHECKING:
    from rhesis_pipeline.runs.record import Run

PROCESSES, THREADS = 2, 4


def _all_live(expected: int) -> bool:
    from rhesis_pipeline.errors import DatabaseUnavailable
    from rhesis_pipeline.monitor import list_workers
    from rhesis_pipeline.storage import engine

    try:
        running = [w for w in list_workers().workers if w.stopped_at is None]
    except DatabaseUnavailable:
        engine.dispose()
        return False
    return len(running) == expected and all(w.alive and w.lock_held for w in running)


def _wait(check: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def _progress(run_id: str) -> Run | None:
    from rhesis_pipeline.errors import DatabaseUnavailable
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.storage import engine

    try:
        return get_run(run_id)
    except DatabaseUnavailable:
        engine.dispose()
        return None


def trial(url: str, tests: int, fault: Callable[[], object]) -> tuple[float, int]:
    """Run *tests* tests, apply *fault* (returns when the database answers again) at a
    third of the run; returns (seconds until all workers live, tests executed twice)."""
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import engine

    log = Path(tempfile.mkdtemp(prefix="rhesis-outage-")) / "executions.log"
    os.environ["BENCH_EXEC_LOG"] = str(log)
    with workers(url, processes=PROCESSES, threads=THREADS, log_name=".outage-workers.log"):
        _wait(lambda: _all_live(PROCESSES), 30, "workers live")
        run_id = launch_test_run(
            [{"id": f"t{i}"} for i in range(tests)],
            executor="benchmarks.targets:logged",
            options={"max_retries": 0},
        )
        _wait(lambda: (p := _progress(run_id)) and p.done >= tests // 3, 120, "progress")
        fault()
        engine.dispose()
        live_after = _wait(lambda: _all_live(PROCESSES), 120, "workers live again")
        _wait(lambda: (p := _progress(run_id)) and p.finished, 300, "run finished")
        run = get_run(run_id)
        if (run.status, run.passed, run.collected_count) != ("COMPLETED", tests, 1):
            raise SystemExit(f"run not exact: {run}")
    executions = Counter(log.read_text().split())
    if len(executions) != tests:
        raise SystemExit(f"{tests - len(executions)} tests never executed")
    return live_after, sum(n - 1 for n in executions.values())


def report(name: str, results: list[tuple[float, int]]) -> None:
    for i, (live, again) in enumerate(results, 1):
        print(f"{name} trial {i}: workers live again {live:.2f} s after; {again} tests ran twice")
    lives = [r[0] for r in results]
    print(
        f"{name}: live again median {statistics.median(lives):.2f} s, max {max(lives):.2f} s "
        f"(target <= 10 s); re-executions max {max(r[1] for r in results)} "
        f"(target <= {PROCESSES * THREADS}); every run COMPLETED, one callback"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--tests", type=int, default=3000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print("defaults: heartbeat 5 s, lock grace 15 s; 2 worker processes x 4 threads")

    from tests.support.faults import OwnedServer, cut_connections

    with fresh_database() as (url, where):
        print(f"cut: database on {where}; {args.tests} tests of 10 ms per trial")
        report(
            "cut",
            [trial(url, args.tests, lambda: cut_connections(url)) for _ in range(args.trials)],
        )

    from rhesis_pipeline.settings import Settings
    from rhesis_pipeline.storage import engine, migrate

    with OwnedServer() as server:
        server.start()
        url = server.create_database(f"rhesis_outage_{uuid.uuid4().hex[:8]}")
        engine.configure(settings_=Settings.from_env({"DATABASE_URL": url}), url=url)
        migrate.upgrade()
        engine.dispose()

        def restart() -> None:
            server.stop()
            time.sleep(10)  # the outage being measured: the server is down for 10 s
            server.start()

        print(f"restart: owned Postgres 16 server stopped for 10 s; {args.tests} tests per trial")
        report("restart", [trial(url, args.tests, restart) for _ in range(args.trials)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
