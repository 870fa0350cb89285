"""dramatiq's rate-limit primitives on the Postgres backend (real database)."""

import select
import threading

import dramatiq
import pytest
from dramatiq.rate_limits import Barrier, ConcurrentRateLimiter, WindowRateLimiter
from sqlalchemy import text

from rhesis_pipeline.storage import db
from rhesis_pipeline.worker import rate_limits
from rhesis_pipeline.worker.rate_limits import PostgresRateLimiterBackend

from .support import actors
from .support.waiting import wait_until


@pytest.fixture
def backend(database_url):
    return PostgresRateLimiterBackend()


def test_add_only_when_absent_or_expired(backend):
    assert backend.add("k", 5, ttl=60_000) is True
    assert backend.add("k", 7, ttl=60_000) is False
    assert backend.add("short", 1, ttl=50) is True
    wait_until(lambda: _expired("short"), what="key 'short' expired by the database's clock")
    assert backend.add("short", 2, ttl=60_000) is True  # expired keys count as absent


def test_incr_and_decr_respect_their_bounds(backend):
    assert backend.incr("n", 1, maximum=2, ttl=60_000)
    assert backend.incr("n", 1, maximum=2, ttl=60_000)
    assert not backend.incr("n", 1, maximum=2, ttl=60_000)
    assert backend.decr("n", 1, minimum=0, ttl=60_000)
    assert backend.decr("n", 1, minimum=0, ttl=60_000)
    assert not backend.decr("n", 1, minimum=0, ttl=60_000)


def test_incr_and_sum_refuses_when_the_window_sum_would_pass_the_maximum(backend):
    window = ["w@0", "w@1"]  # as WindowRateLimiter passes them: the key is among them
    assert backend.incr_and_sum("w@1", window, 1, maximum=2, ttl=60_000)
    assert backend.incr_and_sum("w@0", lambda: window, 1, maximum=2, ttl=60_000)
    assert not backend.incr_and_sum("w@1", window, 1, maximum=2, ttl=60_000)


def test_barrier_clears_once_for_its_parties(backend):
    barrier = Barrier(backend, "b", ttl=60_000)
    assert barrier.create(parties=3)
    assert [barrier.wait(block=False) for _ in range(3)] == [False, False, True]


def test_blocking_barrier_wait_wakes_on_the_last_party(backend, monkeypatch):
    blocked = SelectSpy()
    monkeypatch.setattr(rate_limits, "select", blocked)
    barrier = Barrier(backend, "blocking", ttl=60_000)
    barrier.create(parties=2)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(barrier.wait(timeout=10_000)))
    waiter.start()
    # The waiter listens, found no event yet, and blocks on its connection ...
    assert blocked.entered.wait(10), "the waiter never blocked"
    assert waiter.is_alive() and woke == []
    # ... until the last party arrives.
    assert barrier.wait(block=False) is True
    waiter.join(10)
    assert woke == [True]
    # An event outlives its NOTIFY: a late waiter still sees it.
    assert backend.wait("blocking@events", 1000) is True
    assert backend.wait("never-notified", 200) is False


def test_concurrent_rate_limiter_admits_at_most_its_limit(backend):
    limiter = ConcurrentRateLimiter(backend, "mutex", limit=2, ttl=60_000)
    admitted, refused, release = [], [], threading.Event()
    start = threading.Barrier(6)

    def work(i):
        start.wait()
        with limiter.acquire(raise_on_failure=False) as acquired:
            (admitted if acquired else refused).append(i)
            if acquired:
                release.wait(30)  # hold the slot until every thread has tried

    # When: six threads try at once, and those admitted hold on.
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(admitted) + len(refused) == 6, what="every thread tried")
    finally:
        release.set()
        for t in threads:
            t.join(60)
    # Then: two inside at once, the four others refused.
    assert (len(admitted), len(refused)) == (2, 4)
    # Released, the slots are free again.
    with (
        limiter.acquire(raise_on_failure=False) as first,
        limiter.acquire(raise_on_failure=False) as second,
    ):
        assert first and second


def test_window_rate_limiter_works(backend):
    limiter = WindowRateLimiter(backend, "win", limit=3, window=60)
    admitted = 0
    for _ in range(5):
        with limiter.acquire(raise_on_failure=False) as acquired:
            admitted += bool(acquired)
    assert admitted == 3


@pytest.mark.slow
def test_dramatiq_group_completion_callback_fires_once_on_postgres(workers):
    worker = workers.start(processes=2, threads=2)
    members = [actors.record.message(f"member-{i}") for i in range(6)]
    callback = actors.record.message("group-done")
    group = dramatiq.group(members)
    group.add_completion_callback(callback)
    group.run()
    # Every member acked: each one has had its turn at the barrier (a member's
    # completion enqueues the callback before its ack) ...
    wait_until(
        lambda: _states([m.message_id for m in members]) == ["done"] * 6, what="members acked"
    )
    # ... and the callback ran to its end.
    wait_until(
        lambda: _states([callback.message_id]) in (["done"], ["rejected"]), what="group callback"
    )
    assert _states([callback.message_id]) == ["done"]  # a second run would fail on its key
    assert _count("member-%") == 6 and _count("group-done") == 1
    # One execution: the actor logs one line each time it runs.
    assert worker.log().count("recording group-done") == 1


def _count(pattern: str) -> int:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM public.test_records WHERE key LIKE :p"), {"p": pattern}
        ).scalar()


def _states(message_ids: list[str]) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT state::text FROM dramatiq.queue "
                "WHERE message_id = ANY(CAST(:ids AS uuid[])) ORDER BY state"
            ),
            {"ids": message_ids},
        )
        return list(rows.scalars())


def _expired(key: str) -> bool:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT expires_at <= clock_timestamp() FROM rhesis.rate_limits WHERE key = :k"),
            {"k": key},
        ).scalar()


class SelectSpy:
    """Stands in for the ``select`` module in rhesis_pipeline.worker.rate_limits: sets *entered*
    when a waiter starts blocking on its LISTEN connection."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    def select(self, *args):
        self.entered.set()
        return select.select(*args)
