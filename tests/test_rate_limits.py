"""dramatiq's rate-limit primitives on the Postgres backend (real database)."""

import threading
import time

import dramatiq
import pytest
from dramatiq.rate_limits import Barrier, ConcurrentRateLimiter, WindowRateLimiter
from sqlalchemy import text

from rhesis_pipeline import db
from rhesis_pipeline.rate_limits import PostgresRateLimiterBackend

from .support import actors
from .support.waiting import wait_until


@pytest.fixture
def backend(database_url):
    return PostgresRateLimiterBackend()


def test_add_only_when_absent_or_expired(backend):
    assert backend.add("k", 5, ttl=60_000) is True
    assert backend.add("k", 7, ttl=60_000) is False
    assert backend.add("short", 1, ttl=50) is True
    time.sleep(0.1)
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


def test_blocking_barrier_wait_wakes_on_the_last_party(backend):
    barrier = Barrier(backend, "blocking", ttl=60_000)
    barrier.create(parties=2)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(barrier.wait(timeout=10_000)))
    waiter.start()
    time.sleep(0.3)
    assert barrier.wait(block=False) is True
    waiter.join(10)
    assert woke == [True]
    # An event outlives its NOTIFY: a late waiter still sees it.
    assert backend.wait("blocking@events", 1000) is True
    assert backend.wait("never-notified", 200) is False


def test_concurrent_rate_limiter_admits_at_most_its_limit(backend):
    limiter = ConcurrentRateLimiter(backend, "mutex", limit=2, ttl=60_000)
    inside, peak, lock = [0], [0], threading.Lock()

    def work():
        for _ in range(5):
            with limiter.acquire(raise_on_failure=False) as acquired:
                if not acquired:
                    continue
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                time.sleep(0.01)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak[0] == 2


def test_window_rate_limiter_works(backend):
    limiter = WindowRateLimiter(backend, "win", limit=3, window=60)
    admitted = 0
    for _ in range(5):
        with limiter.acquire(raise_on_failure=False) as acquired:
            admitted += bool(acquired)
    assert admitted == 3


@pytest.mark.slow
def test_dramatiq_group_completion_callback_fires_once_on_postgres(workers):
    workers.start(processes=2, threads=2)
    members = [actors.record.message(f"member-{i}") for i in range(6)]
    group = dramatiq.group(members)
    group.add_completion_callback(actors.record.message("group-done"))
    group.run()
    wait_until(lambda: _count("group-done") == 1, what="group callback")
    wait_until(lambda: _count("member-%") == 6, what="members")
    time.sleep(0.5)
    assert _count("group-done") == 1


def _count(pattern: str) -> int:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM public.test_records WHERE key LIKE :p"), {"p": pattern}
        ).scalar()
