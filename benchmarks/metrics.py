"""How long one Prometheus scrape (GET /metrics) takes on a database with a realistic backlog.

    python benchmarks/metrics.py [--done-messages 1000000] [--finished-runs 100000]

Fills a fresh database with finished queue rows (the retention window's worth) and
finished runs (half of them of organization ``org-bench``), the running totals a year of
retention would leave in ``rhesis.metric_totals``, and one unfinished run of 20,000
waiting tests (no worker); then times ``exposition()`` (the system's scrape) and
``exposition("org-bench")`` (a tenant's, through row-level security) — median of 5 —
and checks that the scrape's numbers are the database's.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, machine
from benchmarks.monitor import FILL_MESSAGES, timed

FILL_RUNS = """
INSERT INTO rhesis.test_runs (id, name, status, executor, total, done, passed, failed,
                              organization_id, created_at, started_at, finished_at)
SELECT gen_random_uuid(), 'old-' || g, 'PARTIAL', '{"type": "python"}', 10, 10, 9, 1,
       CASE WHEN g % 2 = 0 THEN 'org-bench' END,
       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
FROM generate_series(1, :n) AS g
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--done-messages", type=int, default=1_000_000)
    parser.add_argument("--finished-runs", type=int, default=100_000)
    args = parser.parse_args()

    from prometheus_client.parser import text_string_to_metric_families
    from sqlalchemy import text

    from rhesis_pipeline.monitor.prometheus import exposition
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.storage import db

    with fresh_database() as (_url, where):
        print(f"machine: {machine()}; database: {where}")
        with db.begin() as conn:
            conn.execute(text(FILL_MESSAGES), {"n": args.done_messages})
            conn.execute(text(FILL_RUNS), {"n": args.finished_runs})
            conn.exec_driver_sql("ANALYZE")
        launch_test_run(
            [{"id": i} for i in range(20_000)], executor="benchmarks.targets:noop", name="waiting"
        )
        print(
            f"filled {args.done_messages:,} done messages, {args.finished_runs:,} finished runs "
            f"and 1 unfinished run (20,000 waiting tests)"
        )

        body, _content_type = exposition()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        passed = samples[("rhesis_tests_finished_total", (("status", "passed"),))]
        assert passed == 9 * args.finished_runs, passed
        tenant_body, _ = exposition("org-bench")
        tenant_passed = {
            s.labels["status"]: s.value
            for family in text_string_to_metric_families(tenant_body.decode())
            for s in family.samples
            if s.name == "rhesis_tests_finished_total"
        }["passed"]
        assert tenant_passed == 9 * (args.finished_runs // 2), tenant_passed
        print(f"exposition: {len(body):,} bytes, {len(samples)} samples")

        for name, org in (("exposition()", None), ('exposition("org-bench")', "org-bench")):
            median_s = timed(functools.partial(exposition, org), 5)
            print(f"{name:<28} {median_s * 1000:8.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
