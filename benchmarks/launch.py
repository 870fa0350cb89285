"""Submission benchmark: N tests launched as the system role (COPY) and as a tenant (INSERT).

    python benchmarks/launch.py [--size 10000] [--repeat 7]

Times ``launch_test_run`` of --size tests (no workers: only the submission's transaction),
--repeat times each way, alternating: as the system role (the tables' owner: COPY), and in
a transaction acting as ``rhesis_tenant`` for one organization, as a web backend does
(row-level security applies: Postgres refuses COPY FROM, the launch INSERTs … SELECT FROM
unnest). Prints the median and the fastest of each. Uses BENCH_DATABASE_URL, else the
local server, else an embedded one; makes and drops its own database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine


def launch(n: int, *, as_tenant: bool) -> float:
    from sqlalchemy.orm import Session

    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import engine, tenancy

    tests = [{"id": i, "prompt": f"question {i}"} for i in range(n)]
    started = time.perf_counter()
    if as_tenant:
        with Session(engine.get()) as session, session.begin():
            tenancy.act_as_tenant(session, "org-bench", "u-bench")
            launch_test_run(
                tests, executor="benchmarks.targets:noop", organization_id="org-bench",
                session=session,
            )  # fmt: skip
    else:
        launch_test_run(tests, executor="benchmarks.targets:noop", organization_id="org-bench")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with fresh_database() as (_url, where):
        print(f"machine: {machine()}; database: {where}")
        times: dict[str, list[float]] = {"system role (COPY)": [], "rhesis_tenant (INSERT)": []}
        launch(100, as_tenant=False)  # warm up: connection, imports
        for _ in range(args.repeat):
            times["system role (COPY)"].append(launch(args.size, as_tenant=False))
            times["rhesis_tenant (INSERT)"].append(launch(args.size, as_tenant=True))
        for name, values in times.items():
            print(
                f"{args.size} tests as {name}: median {statistics.median(values):.3f} s, "
                f"fastest {min(values):.3f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
