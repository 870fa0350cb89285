"""A local fake LLM judge: an OpenAI-compatible chat-completions endpoint for the demo and tests.

``POST /v1/chat/completions`` with the messages that :mod:`rhesis_pipeline.execution.judge`
sends answers ``{"choices": [{"message": {"role": "assistant", "content": VERDICT}}]}``
where VERDICT is ``{"score": S, "reason": "..."}`` by a deterministic rule: S is the share
of the words the rubric quotes in double quotes (``The answer names "Paris"``) that the
answer contains, case-insensitively (1.0 when the rubric quotes none and the answer is not
empty). Tags in the rubric make it misbehave on purpose:

* ``[garbage]`` — answers prose, not JSON (the test's error quotes it);
* ``[fenced]`` — the verdict inside a Markdown ```json fence (accepted);
* ``[out-of-range]`` — ``{"score": 1.5, …}`` (refused);
* ``[refuse]`` — no content, a ``refusal`` instead (refused).

Options: ``latency_s`` (seconds before each answer), ``throttle_first=K`` (the first K
calls get HTTP 429 with ``Retry-After: retry_after_s``), ``api_key`` (then a request
without ``Authorization: Bearer <api_key>`` gets 401). :meth:`FakeJudge.stats` counts
calls, 429s and the peak of concurrent requests; ``last_headers`` and ``last_body`` are
the last request's.

It is in the package (not in benchmarks/) because ``rhesis-pipeline demo`` runs it from an
installed wheel. It runs on its own event loop in a background thread::

    with FakeJudge(throttle_first=2, retry_after_s=1) as judge:
        judge.url  # http://127.0.0.1:PORT/v1/chat/completions
        judge.stats()["calls"]

``python -m rhesis_pipeline.demo_judge --port 8766`` serves it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
from typing import Any

from aiohttp import web

_QUOTED = re.compile(r'"([^"\n]+)"')
_SECTION = {tag: re.compile(rf"<{tag}>\n(.*)\n</{tag}>", re.DOTALL) for tag in ("rubric", "answer")}


def verdict(rubric: str, answer: str) -> tuple[float, str]:
    """The fake judge's score in [0, 1] and reason for *answer* under *rubric*."""
    words = _QUOTED.findall(rubric)
    if not words:
        return (1.0, "the answer is not empty") if answer.strip() else (0.0, "the answer is empty")
    found = [w for w in words if w.lower() in answer.lower()]
    missing = [w for w in words if w not in found]
    score = round(len(found) / len(words), 4)
    if not missing:
        return score, f"the answer contains {', '.join(map(repr, found))}"
    return score, f"the answer lacks {', '.join(map(repr, missing))}"


def _content(rubric: str, answer: str) -> str | None:
    """The assistant message the fake judge answers (None: a refusal)."""
    if "[garbage]" in rubric:
        return "I think this answer is pretty good overall!"
    if "[refuse]" in rubric:
        return None
    score, reason = verdict(rubric, answer)
    text = json.dumps({"score": 1.5 if "[out-of-range]" in rubric else score, "reason": reason})
    return f"```json\n{text}\n```" if "[fenced]" in rubric else text


class FakeJudge:
    """The fake judge on 127.0.0.1 (*port* 0: any free port), served in a background thread
    while the ``with`` block runs; see the module docstring for the options."""

    def __init__(
        self,
        *,
        port: int = 0,
        latency_s: float = 0.0,
        throttle_first: int = 0,
        retry_after_s: float = 1.0,
        api_key: str | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.throttle_first = throttle_first
        self.retry_after_s = retry_after_s
        self.api_key = api_key
        self.port = port
        self.last_headers: dict[str, str] = {}
        self.last_body: Any = None
        self._counts = self._zero()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-judge", daemon=True)

    @staticmethod
    def _zero() -> dict[str, int]:
        return {"calls": 0, "answered_429": 0, "in_flight": 0, "peak_in_flight": 0}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def stats(self) -> dict[str, int]:
        """Calls received, 429s answered, requests in flight now and at most at once."""
        return dict(self._counts)

    def reset(self) -> None:
        """Zero the counters (the throttled first calls count again from 0)."""
        self._counts = self._zero()

    async def _chat(self, request: web.Request) -> web.Response:
        counts = self._counts  # a reset meanwhile must not make in_flight negative
        counts["calls"] += 1
        self.last_headers = dict(request.headers)
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        if counts["calls"] <= self.throttle_first:
            counts["answered_429"] += 1
            headers = {"Retry-After": f"{self.retry_after_s:g}"}
            return web.json_response(
                {"error": {"message": "rate limited"}}, status=429, headers=headers
            )
        counts["in_flight"] += 1
        counts["peak_in_flight"] = max(counts["peak_in_flight"], counts["in_flight"])
        try:
            self.last_body = body = await request.json()
            user = str(body["messages"][-1]["content"])
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        except (ValueError, LookupError, TypeError):
            return web.json_response({"error": {"message": "expected chat messages"}}, status=400)
        finally:
            counts["in_flight"] -= 1
        found = {tag: pattern.search(user) for tag, pattern in _SECTION.items()}
        rubric, answer = ((m.group(1) if m else "") for m in found.values())
        content = _content(rubric, answer)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if content is None:
            message["refusal"] = "I cannot grade this."
        return web.json_response(
            {
                "model": body.get("model", "fake-judge"),
                "choices": [{"index": 0, "message": message}],
            }
        )

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat)])
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def __enter__(self) -> FakeJudge:
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None or not self._ready.is_set():
            raise RuntimeError(f"the fake judge did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--throttle-first", type=int, default=0)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    args = parser.parse_args()
    judge = FakeJudge(
        port=args.port,
        latency_s=args.latency_s,
        throttle_first=args.throttle_first,
        retry_after_s=args.retry_after_s,
    )
    with judge, contextlib.suppress(KeyboardInterrupt):
        print(f"fake judge at {judge.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
