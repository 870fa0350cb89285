"""The worker reads query rows by name: each query's result columns are a NamedTuple
(rhesis_pipeline/worker/claims.py, acks.py, endpoint_limits.py), checked here against
the columns the query really returns; and a member claimed by a registered worker comes
with its test (the fast path's PreloadedStart)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from rhesis_pipeline.runs.messages import MEMBER
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.queries import Q
from rhesis_pipeline.worker.acks import ReleasedRow
from rhesis_pipeline.worker.claims import ClaimedRow, FairClaimedRow, LoadedClaimRow
from rhesis_pipeline.worker.delivery import PreloadedStart, deliveries
from rhesis_pipeline.worker.endpoint_limits import ExchangeRow
from rhesis_pipeline.worker.registry import Registration

from .support import actors
from .support.waiting import wait_until

WORKER = str(uuid.uuid4())

#: Each row type, its query, and parameters under which the query changes nothing here.
QUERIES = [
    (
        ClaimedRow,
        "claim_messages",
        {
            "queue_name": "nothing-waits-here",
            "limit": 1,
            "check_eta": False,
            "due_before_ms": 0,
            "worker_id": WORKER,
        },
    ),
    (
        FairClaimedRow,
        "claim_fair_messages",
        {
            "queue_name": "nothing-waits-here",
            "limit": 1,
            "after_org": "",
            "cap": None,
            "worker_id": WORKER,
        },
    ),
    (LoadedClaimRow, "load_claimed", {"worker_id": WORKER, "queue_name": "nothing-waits-here"}),
    (
        ExchangeRow,
        "endpoint_exchange",
        {
            "worker": WORKER,
            "keys": ["https://nowhere.example:443"],
            "max_concurrency": [4],
            "declared": [True],
            "rpm": [None],
            "want": [0],
            "release": [0],
            "waiting": [0],
            "successes": [0],
            "throttles": [0],
            "pause_s": [0.0],
            "lease_timeout_s": 30.0,
        },
    ),
]


@pytest.mark.parametrize(("row_type", "name", "params"), QUERIES, ids=[q[1] for q in QUERIES])
def test_row_types_name_the_columns_their_query_returns(database_url, row_type, name, params):
    with engine.get().connect() as conn:
        columns = list(conn.execute(Q[name], params).keys())
        conn.rollback()
    assert list(row_type._fields) == columns


def test_the_released_row_has_the_columns_of_its_query(database_url):
    params = {"worker_id": WORKER, "queue_name": "q", "held": [], "channel": "nobody"}
    with engine.get().connect() as conn:
        columns = list(conn.execute(Q["release_unheld_claims"], params).keys())
        conn.rollback()
    assert len(columns) == len(ReleasedRow._fields)


def test_a_member_claimed_by_a_registered_worker_comes_with_its_test(database_url):
    # Given: a run of two tests, and a registered worker's members consumer.
    tests = [{"id": "first", "prompt": "a"}, {"id": "second", "prompt": "b"}]
    run_id = launch_test_run(tests, executor="tests.support.targets:noop")
    registration = Registration([MEMBER.queue_name])
    registration.start()
    consumer = actors.record.broker.consume(MEMBER.queue_name, prefetch=2, timeout=200)
    try:
        # When: it hands out both members.
        handed = [
            wait_until(lambda: next(consumer), timeout=10, what="a member handed out")
            for _ in tests
        ]

        # Then: each delivery carries its test, loaded with the claim.
        by_test = {}
        for proxy in handed:
            delivery = deliveries.of(proxy)
            assert delivery is not None and delivery.fast_path
            assert isinstance(delivery.preloaded, PreloadedStart)
            by_test[proxy.args[1]] = delivery.preloaded
        assert set(by_test) == {"first", "second"}
        for test in tests:
            preloaded = by_test[test["id"]]
            assert preloaded.status == "queued"
            assert preloaded.test["prompt"] == test["prompt"]
            assert preloaded.executor["target"] == "tests.support.targets:noop"
            assert preloaded.run_status == "IN_PROGRESS"
            assert preloaded.cancel_requested is False
        with db.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM rhesis.test_runs WHERE id = :r"), {"r": run_id}
            ).scalar()
        assert status == "IN_PROGRESS"
        consumer.requeue(handed)
    finally:
        consumer.close()
        registration.stop()
