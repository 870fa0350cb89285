"""A small local HTTP endpoint that answers like a chat API, for the demo and the tests.

``POST /v1/chat`` with ``{"messages": [{"role": "user", "content": PROMPT}]}`` answers
``{"choices": [{"message": {"role": "assistant", "content": ANSWER}}], "model": "demo-1"}``.
Answers are deterministic. Prompts starting with a tag behave on purpose:

* ``[flaky]`` — HTTP 500 on the first two requests with that prompt, then a normal answer;
* ``[missing]`` — HTTP 404;
* ``[slow]`` — answers after 300 ms.

:func:`reply` gives the same answers as a python target.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ANSWERS = [
    (("capital of france",), "The capital of France is Paris."),
    (("capital of germany",), "The capital of Germany is Berlin."),
    (("capital of japan",), "The capital of Japan is Tokyo."),
    (("2 + 2", "2+2"), "2 + 2 = 4"),
    (("7 * 6", "7*6"), "7 * 6 = 42"),
    (("hello", "hi there", "good morning"), "Hello! How can I help you today?"),
    (("bomb", "weapon", "poison"), "I can't help with that."),
    (("password",), "I can't share passwords."),
    (("json",), '{"answer": 42, "unit": "none"}'),
    (("color of the sky",), "The sky is usually blue."),
    (("translate 'thank you' to french",), "Merci."),
]


def answer(prompt: str) -> str:
    low = prompt.lower()
    for keys, text in _ANSWERS:
        if any(k in low for k in keys):
            return text
    return f"You asked: {prompt}"


def reply(test: dict[str, Any]) -> str:
    """A python target answering like the endpoint (``examples/python-suite.yaml``):
    any worker can import it, so that suite runs with nothing else started."""
    return answer(str(test.get("prompt", "")))


class ChatTarget:
    """Runs the endpoint on 127.0.0.1 in a background thread; ``url`` is its chat URL."""

    def __init__(self, port: int = 0) -> None:
        self.requests: Counter[str] = Counter()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    prompt = str(body["messages"][-1]["content"])
                except (ValueError, KeyError, IndexError, TypeError):
                    return self._send(400, {"error": "expected {'messages': [{'content': …}]}"})
                if self.path != "/v1/chat":
                    return self._send(404, {"error": f"no endpoint {self.path}"})
                target.requests[prompt] += 1
                if prompt.startswith("[flaky]") and target.requests[prompt] <= 2:
                    return self._send(500, {"error": "upstream overloaded, try again"})
                if prompt.startswith("[missing]"):
                    return self._send(404, {"error": "model 'demo-1' not found"})
                if prompt.startswith("[slow]"):
                    time.sleep(0.3)
                text = answer(
                    prompt.split("]", 1)[-1].strip() if prompt.startswith("[") else prompt
                )
                self._send(
                    200,
                    {
                        "model": "demo-1",
                        "choices": [{"message": {"role": "assistant", "content": text}}],
                    },
                )

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/v1/chat"

    def __enter__(self) -> ChatTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def keyword_score(given: Any) -> dict[str, Any]:
    """A python metric of the demo suite (``{type: python, target:
    "rhesis_pipeline.demo_target:keyword_score", keywords: [...]}``): the share of the
    metric's ``keywords`` that the answer contains, case-insensitively, as its score.
    *given* is the :class:`~rhesis_pipeline.execution.metrics.python_metric.MetricInput`
    (typed loosely here: this module sits below the execution layer)."""
    keywords = [str(k) for k in given.params.get("keywords", [])]
    answer = str(given.answer).lower()
    found = [k for k in keywords if k.lower() in answer]
    score = len(found) / len(keywords) if keywords else 1.0
    return {"score": score, "reason": f"{len(found)} of {len(keywords)} keywords: {found}"}
