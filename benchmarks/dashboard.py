"""How fast the dashboard answers with 100,000 runs in the database.

    python benchmarks/dashboard.py [--runs 100000] [--repeat 20]

Fills a fresh database with --runs finished runs (of three organizations, names
``nightly-N``), starts ``rhesis-monitor dashboard`` as users do, and times over HTTP
(median and max of --repeat requests): the runs page (first page; filtered by status,
by organization, by name; a page deep in the keyset), the overview, a run's page, and
/metrics. Target (issue #14): the runs page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine

FILL_RUNS = """
INSERT INTO rhesis.test_runs (id, name, status, organization_id, executor, total, done,
                              passed, failed, created_at, started_at, finished_at)
SELECT gen_random_uuid(), 'nightly-' || g, 'COMPLETED', 'org-' || (g % 3), '{"type": "python"}',
       10, 10, 9, 1, now() - g * interval '1 second', now() - g * interval '1 second',
       now() - g * interval '1 second' + interval '3 seconds'
FROM generate_series(1, :n) AS g
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import httpx
    from sqlalchemy import text

    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    with fresh_database() as (url, where):
        print(f"machine: {machine()}; database: {where}")
        with db.begin() as conn:
            conn.execute(text(FILL_RUNS), {"n": args.runs})
            conn.exec_driver_sql("ANALYZE rhesis.test_runs")
        run_id = launch_test_run(
            [{"id": i} for i in range(1000)], executor="benchmarks.targets:noop", name="big"
        )
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "rhesis-monitor"), "dashboard", "--port", "0"],
            env={**os.environ, "DATABASE_URL": url},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None  # stderr=PIPE
        try:
            line = ""
            while "serving dashboard on" not in line:
                line = proc.stderr.readline()
                if not line:
                    raise SystemExit("the dashboard did not start")
            base = line.split("serving dashboard on ", 1)[1].strip()
            with httpx.Client(base_url=base, timeout=30) as http:
                # Follow the keyset 200 pages of 50 in (10,000 runs deep), or as far as
                # --runs goes.
                deep, pages = "/runs", 0
                while pages < 200:
                    found = re.search(r'class="next" href="([^"]+)"', http.get(deep).text)
                    if not found:
                        break
                    deep, pages = found.group(1).replace("&amp;", "&"), pages + 1
                paths = {
                    "runs, first page": "/runs",
                    "runs, status=COMPLETED": "/runs?status=COMPLETED",
                    "runs, org=org-1": "/runs?org=org-1",
                    "runs, name=nightly-9999": "/runs?name=nightly-9999",
                    f"runs, {pages * 50:,} deep": deep,
                    "overview": "/",
                    "run page (1,000 tests)": f"/runs/{run_id}",
                    "/metrics": "/metrics",
                }
                print(f"{args.runs:,} runs in the database; {args.repeat} requests each")
                for label, path in paths.items():
                    times = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        response = http.get(path)
                        times.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, (path, response.status_code)
                    print(
                        f"  {label:<26} median {statistics.median(times):7.1f} ms, "
                        f"max {max(times):7.1f} ms"
                    )
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
