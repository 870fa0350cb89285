"""A local stand-in for a slow, rate-limited LLM endpoint, for benchmarks and tests.

``POST /v1/chat`` with ``{"prompt": ...}`` answers ``{"answer": "echo: <prompt>"}`` after
``latency_s`` (asyncio.sleep: thousands may wait at once). With ``rate_per_s``, at most that
many requests are admitted in any 1-second sliding window (burst = rate); the others get
429 at once, with ``Retry-After: <retry_after_s>`` (``retry_after_form="seconds"``), the
same as an HTTP-date (``"date"``), or ``retry-after-ms`` (``"ms"``, as OpenAI sends).
``GET /stats`` gives the counters (peak in flight, admitted per second since the last
``POST /reset``, which zeroes them).

The server runs in its own process (its CPU is not the caller's GIL)::

    with SlowEndpoint(latency_s=1.0, rate_per_s=40) as ep:
        ep.url  # http://127.0.0.1:PORT/v1/chat
        ep.stats()["peak_in_flight"]; ep.reset()
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.utils
import json
import math
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

RETRY_AFTER_FORMS = ("seconds", "ms", "date")


def make_app(
    latency_s: float, rate_per_s: int | None, retry_after_s: float, form: str
) -> web.Application:
    def zero() -> dict[str, Any]:
        return {"requests": 0, "answered_200": 0, "answered_429": 0, "in_flight": 0,
                "peak_in_flight": 0, "admitted_per_s": [], "since": time.monotonic()}  # fmt: skip

    c = zero()  # the counters; POST /reset replaces them
    window: collections.deque[float] = collections.deque()  # admissions of the last second

    def retry_after() -> dict[str, str]:
        if form == "ms":
            return {"retry-after-ms": str(round(retry_after_s * 1000))}
        if form == "date":
            return {"Retry-After": email.utils.formatdate(time.time() + retry_after_s, usegmt=True)}
        return {"Retry-After": str(math.ceil(retry_after_s))}

    async def chat(request: web.Request) -> web.Response:
        mine, now = c, time.monotonic()  # a reset meanwhile must not make in_flight negative
        mine["requests"] += 1
        if rate_per_s is not None:
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= rate_per_s:
                mine["answered_429"] += 1
                return web.json_response(
                    {"error": "rate limited"}, status=429, headers=retry_after()
                )
            window.append(now)
        per_s, second = mine["admitted_per_s"], int(now - mine["since"])
        per_s.extend([0] * (second + 1 - len(per_s)))  # per_s[i]: admitted in second i
        per_s[second] += 1
        mine["in_flight"] += 1
        mine["peak_in_flight"] = max(mine["peak_in_flight"], mine["in_flight"])
        try:
            body = await request.json()
            await asyncio.sleep(latency_s)
        finally:
            mine["in_flight"] -= 1
        mine["answered_200"] += 1
        return web.json_response({"answer": f"echo: {body.get('prompt')}"})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in c.items() if k != "since"})

    async def reset(request: web.Request) -> web.Response:
        nonlocal c
        c = zero()
        window.clear()
        return web.json_response({"reset": True})

    app = web.Application()
    app.add_routes(
        [web.post("/v1/chat", chat), web.get("/stats", stats), web.post("/reset", reset)]
    )
    return app


async def serve(args: argparse.Namespace) -> None:
    app = make_app(args.latency_s, args.rate_per_s, args.retry_after_s, args.retry_after_form)
    # handler_cancellation: a client that hangs up (a cancelled test) leaves at once, as
    # in_flight shows, instead of after its latency.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)  # bursts of connects
    await site.start()
    port = runner.addresses[0][1]
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    # The parent never writes: stdin readable means it closed it (or died). Stop then.
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    await runner.cleanup()


class SlowEndpoint:
    """The stand-in in a child process: started and answering on entry, stopped on exit."""

    def __init__(
        self,
        latency_s: float = 1.0,
        rate_per_s: int | None = None,
        retry_after_s: float = 1.0,
        retry_after_form: str = "seconds",
    ) -> None:
        if retry_after_form not in RETRY_AFTER_FORMS:
            raise ValueError(f"retry_after_form must be one of {RETRY_AFTER_FORMS}")
        self.argv = [f"--latency-s={latency_s}", f"--retry-after-s={retry_after_s}",
                     f"--retry-after-form={retry_after_form}"]  # fmt: skip
        if rate_per_s is not None:
            self.argv.append(f"--rate-per-s={rate_per_s}")
        self.proc: subprocess.Popen[str] | None = None
        self.base = ""

    def __enter__(self) -> SlowEndpoint:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.endpoint", *self.argv],
            cwd=Path(__file__).resolve().parent.parent,  # -m imports from the checkout
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()  # "port N", or "" if it died first
            if not line.startswith("port "):
                raise RuntimeError(f"the slow endpoint did not start (exit {self.proc.wait()})")
            self.base = f"http://127.0.0.1:{int(line.split()[1])}"
            deadline = time.monotonic() + 10
            while True:  # answering, not only listening
                try:
                    self.stats()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()  # closing stdin asks it to stop
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self) -> str:
        return f"{self.base}/v1/chat"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
            return answer

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> None:
        self._call("POST", "/reset")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=1.0)
    parser.add_argument("--rate-per-s", type=int, default=None)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    parser.add_argument("--retry-after-form", choices=RETRY_AFTER_FORMS, default="seconds")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of connections
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in the terminal
        asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
