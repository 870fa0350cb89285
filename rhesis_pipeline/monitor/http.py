"""``serve-health``: the health check over HTTP for Kubernetes probes and load balancers.

``GET /healthz`` (also ``/`` and ``/health``) answers 200 with the health report as JSON
when healthy, 503 when not; ``HEAD`` answers the same status without a body; any other
path is 404. A report is reused for ``cache_s`` seconds, so a burst of probes costs the
database one check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .health import HealthReport, check_health

logger = logging.getLogger(__name__)

PATHS = ("/", "/health", "/healthz")


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
        if path not in PATHS:
            payload = json.dumps({"error": f"no such path {path}; use /healthz"}).encode()
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
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)
