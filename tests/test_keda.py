"""The KEDA query on a real Postgres: the value it returns for known waiting, delayed and
claimed counts, the replicas KEDA would set from the ScaledObject's own numbers (read
from the rendered manifest), and its plan and time on a 1,000,000-row queue."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import psycopg2
import pytest

from rhesis_pipeline.monitor.keda import waiting_tests_query
from rhesis_pipeline.runs import queues
from rhesis_pipeline.settings import libpq_url

from .support.kubernetes import keda_replicas, one, render

#: Rows of dramatiq.queue made directly: message ids from gen_random_uuid().
FILL = """
INSERT INTO dramatiq.queue (message_id, queue_name, "state", mtime, message)
SELECT gen_random_uuid(), %(queue)s, %(state)s, now(), '{}'::jsonb
FROM generate_series(1, %(n)s)
"""


@pytest.fixture(scope="module")
def scaled_object() -> dict[str, Any]:
    return one(render(), "ScaledObject", "rhesis-worker")


def fill(cur: Any, queue: str, state: str, n: int) -> None:
    if n:
        cur.execute(FILL, {"queue": queue, "state": state, "n": n})


def value_of(url: str, query: str) -> int:
    """What KEDA's scaler reads: the query's one value, as it runs it."""
    with psycopg2.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        cur.execute(query)
        rows = cur.fetchall()
    conn.close()
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    value: int = rows[0][0]
    return value


@pytest.mark.parametrize(
    ("waiting", "delayed", "claimed", "replicas"),
    [(0, 0, 0, 0), (5, 0, 0, 1), (0, 0, 5, 1), (5_000, 2, 3, 20), (150, 40, 30, 2)],
)
def test_the_query_counts_the_work_and_gives_the_replicas_keda_would_set(
    database_url, scaled_object, waiting, delayed, claimed, replicas
):
    # Given: a queue with known waiting (also retries in the delay queue) and claimed
    # members, finished rows, and messages of a queue no worker Deployment serves here.
    with psycopg2.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        fill(cur, queues.TESTS, "queued", waiting)
        fill(cur, f"{queues.TESTS}.DQ", "queued", delayed)
        fill(cur, queues.TESTS, "consumed", claimed)
        fill(cur, queues.TESTS, "done", 1_000)
        fill(cur, queues.TESTS, "rejected", 7)
        fill(cur, "another-deployments-queue", "queued", 11)
    conn.close()
    query = scaled_object["spec"]["triggers"][0]["metadata"]["query"]

    # When: KEDA runs the manifest's query.
    value = value_of(database_url, query)

    # Then: every waiting, delayed and claimed message counts, nothing else; and the
    # replicas follow the ScaledObject's target, activation and bounds.
    assert value == waiting + delayed + claimed
    assert keda_replicas(value, scaled_object) == replicas
    # The same work seen through --queue rhesis-tests (a Deployment of members only).
    assert value_of(database_url, waiting_tests_query([queues.TESTS])) == value


def test_keda_replicas_reads_the_scaled_objects_numbers(scaled_object):
    # The example overlay: 200 tests a replica, 0..20 replicas, active above 0.
    meta = scaled_object["spec"]["triggers"][0]["metadata"]
    assert (meta["targetQueryValue"], meta["activationTargetQueryValue"]) == ("200", "0")
    assert [keda_replicas(v, scaled_object) for v in (0, 1, 200, 201, 3_999, 4_001)] == [
        0, 1, 1, 2, 20, 20,
    ]  # fmt: skip
    lifted = {**scaled_object, "spec": {**scaled_object["spec"], "minReplicaCount": 1}}
    assert keda_replicas(0, lifted) == 1


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


@pytest.mark.slow
def test_on_a_million_row_queue_the_query_reads_indexes_only_and_answers_fast(
    database_url, scaled_object
):
    # Given: 1,000,000 rows: 990,000 finished, 5,000 waiting, 3,000 claimed, and 2,000
    # waiting on a queue this Deployment does not serve; statistics and visibility map
    # as autovacuum leaves them.
    query = scaled_object["spec"]["triggers"][0]["metadata"]["query"]
    conn = psycopg2.connect(libpq_url(database_url))
    try:
        with conn, conn.cursor() as cur:
            fill(cur, queues.TESTS, "done", 990_000)
            fill(cur, queues.TESTS, "queued", 5_000)
            fill(cur, queues.TESTS, "consumed", 3_000)
            fill(cur, "another-deployments-queue", "queued", 2_000)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE dramatiq.queue")

            # When: the query is explained and timed as KEDA runs it.
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query)
            (plan,) = cur.fetchone()[0]
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                cur.execute(query)
                assert cur.fetchone()[0] == 8_000
                timings.append(time.perf_counter() - started)
    finally:
        conn.close()

    # Then: each count walks a partial index (never the table, never the done rows),
    # and the answer comes in well under the scaler's timeout.
    nodes = plan_nodes(plan["Plan"])
    scans = [n["Node Type"] for n in nodes if "Scan" in n["Node Type"]]
    assert "Seq Scan" not in scans, json.dumps(plan, indent=1)
    on_queue = [n for n in nodes if n.get("Relation Name") == "queue"]
    assert len(on_queue) == 2, scans
    assert {n["Node Type"] for n in on_queue} <= {"Index Only Scan", "Index Scan"}, scans
    median = statistics.median(timings)
    print(f"keda query on 1,000,000 rows: median {median * 1000:.1f} ms, plan {scans}")
    assert median < 0.5
