"""``serve-health``: the health check over HTTP for Kubernetes probes and load balancers.

``GET /healthz`` (also ``/`` and ``/health``) answers 200 with the health report as JSON
when healthy, 503 when not; ``HEAD`` answers the same status without a body; ``GET
/metrics`` answers the Prometheus metrics (:mod:`.prometheus`); any other path is 404. A
report is reused for ``cache_s`` seconds, so a burst of probes costs the database one
check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rhesis_pipeline.monitor.health import HealthReport, check_health
from rhesis_pipeline.monitor.prometheus import exposition

logger = logging.getLogger(__name__)

PATHS = ("/", "/health", "/healthz")
#: Prometheus metrics of the whole system (:mod:`.prometheus`).
METRICS_PATH = "/metrics"


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, *, max_hours: float, cache_s: float = 1.0):
        self.max_hours = max_hours
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, HealthReport] | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/healthz"

    def report(self) -> HealthReport:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                self._cached = (now, check_health(max_hours=self.max_hours))
            return self._cached[1]


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    server_version = "rhesis-monitor"

    def _respond(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        content_type = "application/json"
        if path == METRICS_PATH:
            try:
                payload, content_type = exposition()
                code = HTTPStatus.OK
            except Exception as exc:  # a scrape gets an answer saying why
                logger.exception("metrics scrape failed")
                payload = f"# metrics unavailable: {exc}\n".encode()
                content_type = "text/plain; charset=utf-8"
                code = HTTPStatus.SERVICE_UNAVAILABLE
        elif path not in PATHS:
            payload = json.dumps(
                {"error": f"no such path {path}; use /healthz or /metrics"}
            ).encode()
            code = HTTPStatus.NOT_FOUND
        else:
            try:
                report = self.server.report()
                payload = json.dumps(report.as_dict()).encode()
                code = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
            except Exception as exc:  # a probe must get an answer, not a closed socket
                logger.exception("health check failed")
                payload = json.dumps({"healthy": False, "error": str(exc)}).encode()
                code = HTTPStatus.SERVICE_UNAVAILABLE
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)
