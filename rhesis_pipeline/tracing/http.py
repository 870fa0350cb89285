"""The client span of an HTTP request (the executor's, the LLM judge's), whose context
goes to the endpoint in ``traceparent``."""

from __future__ import annotations

from typing import Any

from rhesis_pipeline.tracing.setup import tracer
from rhesis_pipeline.tracing.spans import CurrentSpan


class HttpRequest(CurrentSpan):
    """The client span of one HTTP request; :meth:`inject` puts its context in the
    request's headers (``traceparent``) so the endpoint's own trace joins the run's."""

    def __init__(self, method: str, url: str) -> None:
        self.method, self.url = method.upper(), url

    def __enter__(self) -> HttpRequest:
        found = tracer()
        if found is None:
            return self
        from urllib.parse import urlsplit

        from opentelemetry.trace import SpanKind

        parts = urlsplit(self.url)
        attributes: dict[str, Any] = {
            "http.request.method": self.method,
            # Without the query string and credentials: they may hold secrets.
            "url.full": f"{parts.scheme}://{parts.hostname}"
            + (f":{parts.port}" if parts.port else "")
            + parts.path,
            "server.address": parts.hostname or "",
        }
        if parts.port:
            attributes["server.port"] = parts.port
        self._enter(found.start_span(self.method, kind=SpanKind.CLIENT, attributes=attributes))
        return self

    def inject(self, headers: dict[str, str]) -> None:
        """Add this span's context to *headers* (the configured propagators: W3C
        ``traceparent``/``tracestate`` by default)."""
        if self.span is not None:
            from opentelemetry import propagate

            propagate.inject(headers)

    def answered(self, status_code: int) -> None:
        if self.span is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_attribute("http.response.status_code", status_code)
            if status_code >= 400:
                self.span.set_attribute("error.type", str(status_code))
                self.span.set_status(Status(StatusCode.ERROR))
