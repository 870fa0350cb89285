"""benchmarks/endpoint.py, the slow rate-limited LLM endpoint the benchmarks and tests use:
it answers after its latency, counts the peak in flight, and answers 429 with the
configured Retry-After beyond its rate. No workers, no database."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import pytest

from benchmarks.endpoint import SlowEndpoint


async def _post(session: aiohttp.ClientSession, url: str, prompt: str) -> tuple[int, dict, dict]:
    async with session.post(url, json={"prompt": prompt}) as response:
        return response.status, dict(response.headers), await response.json()


async def _until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.01)


def test_answers_with_an_echo_after_its_latency():
    async def go(ep: SlowEndpoint) -> tuple[float, int, dict]:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            status, _, body = await _post(session, ep.url, "hello")
            return time.monotonic() - started, status, body

    with SlowEndpoint(latency_s=0.3) as ep:
        elapsed, status, body = asyncio.run(go(ep))
        assert (status, body) == (200, {"answer": "echo: hello"})
        assert elapsed >= 0.29  # a lower bound: the sleep cannot end early (1 ms of clock)
        stats = ep.stats()
        assert (stats["requests"], stats["answered_200"], stats["in_flight"]) == (1, 1, 0)
        ep.reset()
        assert ep.stats()["requests"] == 0


def test_counts_the_peak_of_20_concurrent_requests():
    async def go(ep: SlowEndpoint) -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            calls = [asyncio.create_task(_post(session, ep.url, f"p{i}")) for i in range(20)]

            async def all_in_flight() -> bool:
                async with session.get(ep.url.replace("/v1/chat", "/stats")) as response:
                    return (await response.json())["in_flight"] == 20

            # The latency is long enough for all 20 to be admitted before the first answer;
            # the condition is waited for, not assumed after a sleep.
            await _until(all_in_flight, "20 requests in flight at once")
            return [status for status, _, _ in await asyncio.gather(*calls)]

    with SlowEndpoint(latency_s=2.0) as ep:
        assert asyncio.run(go(ep)) == [200] * 20
        stats = ep.stats()
        assert stats["peak_in_flight"] == 20
        assert (stats["in_flight"], stats["answered_200"], sum(stats["admitted_per_s"])) == (
            0,
            20,
            20,
        )


@pytest.mark.parametrize("form", ["seconds", "ms", "date"])
def test_answers_429_with_the_configured_retry_after_beyond_its_rate(form):
    async def go(ep: SlowEndpoint) -> dict:
        async with aiohttp.ClientSession() as session:
            for i in range(100):  # 3 admitted per second: the 4th of one second is refused
                status, headers, _ = await _post(session, ep.url, f"p{i}")
                if status == 429:
                    return headers
        raise AssertionError("no 429 in 100 requests at 3 requests/s")

    with SlowEndpoint(latency_s=0.0, rate_per_s=3, retry_after_s=2, retry_after_form=form) as ep:
        headers = asyncio.run(go(ep))
        stats = ep.stats()
    if form == "seconds":
        assert headers["Retry-After"] == "2"
    elif form == "ms":
        assert headers["retry-after-ms"] == "2000"
        assert "Retry-After" not in headers
    else:
        when = email.utils.parsedate_to_datetime(headers["Retry-After"]).timestamp()
        assert time.time() - 5 < when < time.time() + 5  # about now + 2 s, by the wall clock
    assert stats["answered_429"] >= 1
    assert stats["answered_200"] + stats["answered_429"] == stats["requests"]
    assert max(stats["admitted_per_s"]) <= 3  # no second admits more than the rate
