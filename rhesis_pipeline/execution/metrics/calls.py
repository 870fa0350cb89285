"""What an asynchronous metric (an LLM judge) may use of the worker running it.

A metric that calls an endpoint must share that endpoint's limits with every worker
(``max_concurrency``, ``requests_per_minute``, 429 pauses), as the tests' own HTTP calls
do. It does so through a :class:`MetricCalls`: the worker's event loop provides one
(:mod:`rhesis_pipeline.worker.metric_calls`, backed by the endpoint budget);
:class:`UnlimitedCalls` serves a metric evaluated outside a worker (no shared limits).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


class MetricCalls(Protocol):
    """The HTTP session and the endpoint limits an asynchronous metric calls through."""

    @property
    def session(self) -> aiohttp.ClientSession:
        """The event loop's HTTP session."""
        ...

    async def limited(self, endpoint: Mapping[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` once the limits of *endpoint* (a mapping with ``url`` and
        optionally ``max_concurrency``, ``requests_per_minute``, ``limit_key``) allow it.
        A :class:`~rhesis_pipeline.execution.attempt.RateLimited` it raises pauses the
        endpoint's key and the call is made again, uncounted."""
        ...


class UnlimitedCalls:
    """MetricCalls without shared limits, for a metric evaluated outside a worker: one
    session of its own (made on first use; :meth:`close` it)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def limited(self, endpoint: Mapping[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        return await call()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
