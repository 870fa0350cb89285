"""Endpoint limits shared by every worker on every host: concurrency, rate, 429 pauses.

A suite's HTTP endpoint may declare ``max_concurrency`` (tests in flight to it across all
workers) and ``requests_per_minute``; its budget is keyed by the endpoint's origin
(``https://api.example.com:443``) or by ``limit_key`` (e.g. one per provider API key, so
that two suites, runs or tenants using the same key share one budget). Without
``max_concurrency`` a key gets ``RHESIS_ENDPOINT_DEFAULT_CONCURRENCY`` (64) as its ceiling
and starts at 8 in flight.

The state lives in Postgres (``rhesis.endpoint_limits`` and ``rhesis.endpoint_leases``,
migration 0009), so the limits hold with workers on many hosts:

* **Concurrency**: each worker process leases slots per key. A test waits for a slot
  before its request is sent (waiting is not execution: its time limit starts when the
  request goes out) and frees it when the answer is in. Freed slots are reused in the
  process while no other process is waiting for the key, else given back.
* **Rate**: with ``requests_per_minute`` every request also takes a token from the key's
  bucket, refilled continuously at 95 % of the rate with a burst of 5 % of a second's
  worth, so that no one-second window sees more than the rate (a provider counting in
  sliding windows answers 429 to the excess).
* **429 / Retry-After**: a 429 (or a 503 with ``Retry-After``) pauses the key for every
  worker for the time the answer says; the attempt is put back, not counted.
* **Adaptive**: the key's ``current_limit`` is multiplied by 0.75 on a 429 (at most once
  per pause) and, from 3 s later on, grows by one per ``current_limit`` successes
  (additive increase), never above ``max_concurrency``. A declared ``max_concurrency``
  starts at that value.

A process talks to the database in one *exchange* per tick (``endpoint_exchange`` in
sql/queries.sql, at most every ``TICK_S``; every ``RENEW_S`` while it holds slots): slots
freed, successes and 429s since the last one, slots wanted for the tests now waiting. A
lease not renewed for ``RHESIS_HEARTBEAT_TIMEOUT_S`` no longer counts (its worker died or
froze). The :class:`Budget` lives in the worker's event loop (:mod:`.inflight`); its
database calls run in a thread so that the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from rhesis_pipeline.storage.outage import Outage

logger = logging.getLogger(__name__)

#: Least seconds between two exchanges of a process (slots freed or wanted wait that long).
TICK_S = 0.02
#: Seconds between exchanges while the process holds slots and nothing changes (renewal).
RENEW_S = 1.0
#: Seconds before a process whose tests still wait asks again (another process may have
#: freed slots, or the bucket refilled), unless something here changes first.
STARVED_RETRY_S = 0.05
#: Most in flight to one key when the suite declares no max_concurrency (the default of
#: RHESIS_ENDPOINT_DEFAULT_CONCURRENCY); it starts at UNDECLARED_START.
DEFAULT_MAX_CONCURRENCY = 64
UNDECLARED_START = 8


#: A test that would wait longer than this for its key's budget, in a process that is
#: full, is deferred (given back to its queue for about that long) rather than held.
DEFER_WAIT_S = 5.0
#: Longest a deferred test stays out of reach, in seconds.
MAX_DEFER_S = 30.0


class Deferred(Exception):
    """The test would wait long for its endpoint's budget in a full process: it goes back
    to its queue for ``delay_s`` seconds instead (see :mod:`.inflight`)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"deferred for {delay_s:.1f}s")
        self.delay_s = delay_s


@dataclass(frozen=True)
class EndpointLimit:
    """The limits of one key, as a suite declares them (or the defaults)."""

    key: str
    max_concurrency: int
    declared: bool = False
    requests_per_minute: int | None = None


def origin(url: str) -> str:
    """``scheme://host:port`` of *url* (the default port made explicit)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def limit_for(spec: Mapping[str, Any], default_max: int = DEFAULT_MAX_CONCURRENCY) -> EndpointLimit:
    """The limit of an HTTP executor *spec* (see :mod:`rhesis_pipeline.execution.http_endpoint`)."""
    declared = spec.get("max_concurrency")
    return EndpointLimit(
        key=spec.get("limit_key") or origin(str(spec["url"])),
        max_concurrency=int(declared) if declared else default_max,
        declared=bool(declared),
        requests_per_minute=spec.get("requests_per_minute"),
    )


@dataclass
class _Key:
    limit: EndpointLimit
    held: int = 0  # slots this process holds, as the database counts them
    in_use: int = 0  # of those, requests in flight now
    release: int = 0  # freed slots to give back at the next exchange
    releasing: int = 0  # freed slots sent back by the exchange under way
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    successes: int = 0
    throttles: int = 0
    pause_s: float = 0.0
    paused_until: float = 0.0  # time.monotonic()
    others_waiting: int = 0
    current_limit: float = 0.0
    #: Mean seconds a request of this key holds its slot (moving average; None: none yet).
    latency_s: float | None = None
    #: Waiters that may be deferred (their tests can go back to the queue).
    evictable: set[asyncio.Future[None]] = field(default_factory=set)

    def throughput(self) -> float | None:
        """Tests per second the key lets through, across all workers (None: not known)."""
        if self.limit.requests_per_minute is not None:
            return self.limit.requests_per_minute / 60
        if self.latency_s and self.current_limit:
            return self.current_limit / max(self.latency_s, 0.001)
        return None

    def expected_wait_s(self, position: int) -> float | None:
        """Seconds until the test at *position* among the waiting ones (here and in
        other processes) gets a slot, or None if the key's throughput is not known."""
        rate = self.throughput()
        return None if not rate else (self.others_waiting + position) / rate

    @property
    def free(self) -> int:
        return self.held - self.in_use - self.release - self.releasing

    def dirty(self) -> bool:
        return bool(self.waiters or self.release or self.successes or self.throttles)


#: Runs ``endpoint_exchange`` with its parameters; returns its rows (see ExchangeRow).
Exchange = Callable[[dict[str, Any]], list[tuple[Any, ...]]]


class ExchangeRow(NamedTuple):
    """A row of ``endpoint_exchange``: what the database answered for one key."""

    key: str
    #: Slots granted to this process by this exchange.
    granted: int
    #: Slots this process holds now, as the database counts them.
    held: int
    #: Seconds the key stays paused (a 429's Retry-After); 0 or None: not paused.
    paused_for_s: float | None
    #: The key's adaptive concurrency limit now (all workers together).
    current_limit: float
    #: Tests of other processes waiting for the key.
    others_waiting: int


class _Sent(NamedTuple):
    """What one exchange reported for a key (put back if the exchange fails)."""

    release: int
    successes: int
    throttles: int
    pause_s: float
    waiting: int


class Budget:
    """This process's share of the endpoint limits; used from one event loop only.

    ``await acquire(limit)`` before a request, ``release(key, ...)`` after it (always).
    *exchange* runs the ``endpoint_exchange`` query (a blocking call, run in a thread).
    """

    def __init__(
        self,
        *,
        worker: str,
        exchange: Exchange,
        lease_timeout_s: float,
        full: Callable[[], bool] = lambda: False,
    ) -> None:
        self.worker = worker
        self._full = full
        self._exchange = exchange
        self.lease_timeout_s = lease_timeout_s
        self._keys: dict[str, _Key] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage("endpoint limits")

    # -- used by the requests ------------------------------------------------------

    async def acquire(self, limit: EndpointLimit, *, evictable: bool = False) -> None:
        """Wait for a slot (and a token) of *limit*'s key; cancellable. *evictable*: while
        it waits, the wait may end in :class:`Deferred` (the process is full and the key
        would keep it waiting long)."""
        k = self._keys.get(limit.key)
        if k is None or k.limit != limit:
            k = self._keys.setdefault(limit.key, _Key(limit))
            k.limit = limit
        if (
            not k.waiters
            and k.free > 0
            and limit.requests_per_minute is None
            and time.monotonic() >= k.paused_until
        ):
            k.in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        k.waiters.append(future)
        if evictable:
            k.evictable.add(future)
        self._wake()
        try:
            await future
        except Deferred:
            raise
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                k.in_use -= 1  # granted just as it was cancelled: the slot is free
                self._free(k)
            elif future in k.waiters:
                k.waiters.remove(future)
            k.evictable.discard(future)
            raise

    def release(
        self,
        key: str,
        *,
        succeeded: bool = False,
        throttled_for_s: float | None = None,
        latency_s: float | None = None,
    ) -> None:
        """The request that held a slot of *key* is over; *succeeded* (an answer that was
        not a 429) or *throttled_for_s* (a 429: pause the key that long for everyone);
        *latency_s*: how long it held the slot."""
        k = self._keys[key]
        k.in_use -= 1
        if succeeded and latency_s is not None:
            k.latency_s = latency_s if k.latency_s is None else 0.9 * k.latency_s + 0.1 * latency_s
        if throttled_for_s is not None:
            k.throttles += 1
            k.pause_s = max(k.pause_s, throttled_for_s)
            k.paused_until = max(k.paused_until, time.monotonic() + throttled_for_s)
        elif succeeded:
            k.successes += 1
        self._free(k)

    def _free(self, k: _Key) -> None:
        """A slot of *k* is free: hand it to a waiting test of this process if that is
        fair (no rate limit, no pause, nobody waiting elsewhere), else give it back."""
        reuse = (
            k.limit.requests_per_minute is None
            and k.others_waiting == 0
            and time.monotonic() >= k.paused_until
        )
        while reuse and k.waiters:
            waiter = k.waiters.popleft()
            k.evictable.discard(waiter)
            if not waiter.done():
                k.in_use += 1  # the slot passes to the waiter
                waiter.set_result(None)
                return
        k.release += 1
        self._wake()

    def deferral(self, limit: EndpointLimit) -> float | None:
        """Seconds to defer a new test of *limit*'s key for, if it would wait longer than
        DEFER_WAIT_S behind the tests already waiting for it; else None."""
        k = self._keys.get(limit.key)
        if k is None:
            return None
        wait = k.expected_wait_s(len(k.waiters) + 1)
        return None if wait is None or wait <= DEFER_WAIT_S else min(MAX_DEFER_S, wait)

    def _evict(self, k: _Key) -> None:
        """The process is full: defer the waiters of *k* that would wait longer than
        DEFER_WAIT_S (the last in line first), each for about its expected wait."""
        position = 0
        keep: deque[asyncio.Future[None]] = deque()
        for waiter in k.waiters:
            if waiter.done():
                continue
            position += 1
            wait = k.expected_wait_s(position)
            if waiter in k.evictable and wait is not None and wait > DEFER_WAIT_S:
                k.evictable.discard(waiter)
                waiter.set_exception(Deferred(min(MAX_DEFER_S, wait)))
                position -= 1
            else:
                keep.append(waiter)
        k.waiters = keep

    # -- the exchange loop -----------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _wake(self) -> None:
        self._kick.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), RENEW_S)
            self._kick.clear()
            keys = [k for k in self._keys.values() if k.dirty() or k.held]
            if not keys:
                continue
            params, sent = self._params(keys)
            try:
                rows = await loop.run_in_executor(None, self._exchange, params)
            except Exception as exc:
                self._restore(sent)
                await asyncio.sleep(self._outage.failed(exc))
                self._wake()
                continue
            self._outage.ok()
            self._apply(rows)
            await asyncio.sleep(TICK_S)

    def _params(self, keys: list[_Key]) -> tuple[dict[str, Any], list[tuple[_Key, _Sent]]]:
        sent: list[tuple[_Key, _Sent]] = []
        for k in keys:
            waiting = sum(1 for w in k.waiters if not w.done())
            sent.append((k, _Sent(k.release, k.successes, k.throttles, k.pause_s, waiting)))
            k.releasing = k.release  # not free until the database has them back
            k.release = k.successes = k.throttles = 0
            k.pause_s = 0.0
        params = {
            "worker": self.worker,
            "keys": [k.limit.key for k, _ in sent],
            "max_concurrency": [k.limit.max_concurrency for k, _ in sent],
            "declared": [k.limit.declared for k, _ in sent],
            "rpm": [k.limit.requests_per_minute for k, _ in sent],
            "want": [c.waiting for _, c in sent],
            "release": [c.release for _, c in sent],
            "waiting": [c.waiting for _, c in sent],
            "successes": [c.successes for _, c in sent],
            "throttles": [c.throttles for _, c in sent],
            "pause_s": [c.pause_s for _, c in sent],
            "lease_timeout_s": self.lease_timeout_s,
        }
        return params, sent

    @staticmethod
    def _restore(sent: list[tuple[_Key, _Sent]]) -> None:
        for k, counts in sent:
            k.release += counts.release
            k.releasing = 0
            k.successes += counts.successes
            k.throttles += counts.throttles
            k.pause_s = max(k.pause_s, counts.pause_s)

    def _apply(self, rows: list[tuple[Any, ...]]) -> None:
        now = time.monotonic()
        for row in map(ExchangeRow._make, rows):
            k = self._keys[row.key]
            k.held = int(row.held)  # what was freed since the exchange was sent is in release
            k.releasing = 0
            k.others_waiting = int(row.others_waiting)
            k.current_limit = float(row.current_limit)
            paused_for_s = row.paused_for_s
            if paused_for_s and paused_for_s > 0:
                k.paused_until = max(k.paused_until, now + float(paused_for_s))
                asyncio.get_running_loop().call_later(float(paused_for_s), self._wake)
            granted = int(row.granted)
            while granted and k.waiters:
                waiter = k.waiters.popleft()
                k.evictable.discard(waiter)
                if waiter.done():
                    continue
                k.in_use += 1
                waiter.set_result(None)
                granted -= 1
            if k.waiters and self._full():
                self._evict(k)
            if granted:  # waiters gone meanwhile
                k.release += granted
                self._wake()
            if k.waiters and now >= k.paused_until:
                # Still waiting: ask again soon (slots free up in other processes without
                # telling this one); a pause wakes the loop when it ends (above).
                asyncio.get_running_loop().call_later(STARVED_RETRY_S, self._wake)
