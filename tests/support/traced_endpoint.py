"""A local HTTP endpoint for tracing tests: answers ``{"answer": "yes"}`` to a POST of
``{"test": id}``, records the ``traceparent`` header of every request, and can fail a
test's first request (500) or hold it until released."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TracedEndpoint:
    """Started on entry (a thread of the test process), stopped on exit."""

    def __init__(self, *, fail_first: set[str] = frozenset(), hold_first: set[str] = frozenset()):
        self.fail_first, self.hold_first = set(fail_first), set(hold_first)
        self.traceparents: dict[str, list[str | None]] = defaultdict(list)
        self.held = threading.Event()  # a held request arrived
        self.release = threading.Event()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                test = str(body["test"])
                with endpoint._lock:
                    seen = endpoint.traceparents[test]
                    seen.append(self.headers.get("traceparent"))
                    first = len(seen) == 1
                if first and test in endpoint.hold_first:
                    endpoint.held.set()
                    endpoint.release.wait(120)
                    return  # the worker that sent it is dead by now
                if first and test in endpoint.fail_first:
                    self._answer(500, {"error": "try again"})
                    return
                self._answer(200, {"answer": "yes"})

            def _answer(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/answer"

    def executor(self) -> dict[str, Any]:
        return {
            "type": "http",
            "url": self.url,
            "body": {"test": "{{id}}"},
            "response_path": "$.answer",
        }

    def __enter__(self) -> TracedEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
