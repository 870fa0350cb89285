"""The HTTP executor: ``{"type": "http", "url", "method", "headers", "body",
"response_path", "timeout_s"}`` plus the endpoint's shared limits (``max_concurrency``,
``requests_per_minute``, ``limit_key``: see :mod:`rhesis_pipeline.worker.endpoint_limits`).

Sends one request with ``{{field}}`` placeholders in url, headers and body replaced by
the test's fields (``{{prompt}}``, any other; a field under the test's ``vars`` too). On a
worker thread one httpx client per process reuses connections (:func:`execute_http`); on
the worker's event loop the loop's aiohttp session does (:func:`execute_http_async`):
httpx's AsyncClient needed 51.7 s for 2,000 requests in flight that aiohttp sends in
5.4 s. What the answer means (a 429, a 5xx, ``response_path``) is decided once for both,
in :mod:`rhesis_pipeline.execution.http_answer`. Latency is recorded as the test's
duration. When the worker traces, each request is a client span whose context goes to the
endpoint in the ``traceparent`` header (:class:`rhesis_pipeline.tracing.spans.HttpRequest`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rhesis_pipeline.execution.attempt import (
    Execution,
    InvalidExecutor,
    RetryableExecutionError,
)
from rhesis_pipeline.execution.http_answer import http_execution
from rhesis_pipeline.execution.values import short_repr
from rhesis_pipeline.tracing.http import HttpRequest

if TYPE_CHECKING:
    import aiohttp
    import httpx

#: ``{{field}}`` placeholders in an HTTP endpoint's url, headers and body.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: An HTTP endpoint's limits, shared by every worker (see
#: :mod:`rhesis_pipeline.worker.endpoint_limits`).
LIMIT_KEYS = ("max_concurrency", "requests_per_minute", "limit_key")
#: Largest max_concurrency and requests_per_minute accepted.
MAX_LIMIT = 1_000_000
#: Seconds a request waits for its answer unless the spec says otherwise (``timeout_s``).
DEFAULT_TIMEOUT_S = 30

_HOST = re.compile(r"[\w.-]+|\[?[0-9A-Fa-f:.]+\]?")


def validate_http_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised spec of an HTTP executor *spec* (``type`` is "http"): defaults
    filled in, limits checked; raises InvalidExecutor naming the problem."""
    allowed = {"type", "url", "method", "headers", "body", "response_path", "timeout_s",
               *LIMIT_KEYS}  # fmt: skip
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise InvalidExecutor(
            f"executor: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    url = spec.get("url")
    problem = url_problem(url) if isinstance(url, str) else "is not an absolute http(s) URL"
    if problem:
        raise InvalidExecutor(f"executor.url {url!r} {problem}")
    return {
        "type": "http",
        "url": url,
        "method": spec.get("method", "POST"),
        "headers": dict(spec.get("headers") or {}),
        "body": spec.get("body"),
        "response_path": spec.get("response_path"),
        "timeout_s": float(spec.get("timeout_s", DEFAULT_TIMEOUT_S)),
        **validate_limits(spec),
    }


def validate_limits(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoint limits of an HTTP executor *spec*, checked (absent keys stay absent)."""
    limits: dict[str, Any] = {}
    for name in ("max_concurrency", "requests_per_minute"):
        value = spec.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
            raise InvalidExecutor(
                f"executor.{name} must be a whole number from 1 to {MAX_LIMIT:,}, got {value!r}"
            )
        limits[name] = value
    key = spec.get("limit_key")
    if key is not None:
        if not isinstance(key, str) or not key.strip() or len(key) > 200:
            raise InvalidExecutor(
                f"executor.limit_key must be a non-empty string of at most 200 characters, "
                f"got {short_repr(key)}"
            )
        limits["limit_key"] = key.strip()
    return limits


def url_problem(url: str) -> str | None:
    """Why the endpoint URL *url* (``{{field}}`` placeholders allowed) cannot be requested,
    as the end of a sentence ("is not …"), or None. Checked when a run is submitted, so a
    URL that httpx would refuse, or that names no reachable port, fails validation rather
    than every test."""
    import httpx

    hint = "; write it like https://host:port/path"
    concrete = PLACEHOLDER.sub("1", url)
    if any(c.isspace() for c in concrete):
        return "contains a space: remove it, or write it as %20"
    try:
        parsed = httpx.URL(concrete)
    except httpx.InvalidURL as exc:
        return f"is not a valid URL ({exc})" + hint
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "is not an absolute http(s) URL" + hint
    if not _HOST.fullmatch(parsed.host):
        return f"has an invalid host {parsed.host!r}" + hint
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"has port {parsed.port}; a port is 1 to 65535"
    return None


# -- the request -----------------------------------------------------------------------


def render(template: Any, test: Mapping[str, Any]) -> Any:
    """Replace ``{{field}}`` in every string of *template* with the test's field. A string
    that is only a placeholder takes the field's value as it is (a number stays one)."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole and template.strip() == template:
            return field(test, whole.group(1))
        return PLACEHOLDER.sub(lambda m: _text(field(test, m.group(1))), template)
    if isinstance(template, list):
        return [render(t, test) for t in template]
    if isinstance(template, dict):
        return {k: render(v, test) for k, v in template.items()}
    return template


def field(test: Mapping[str, Any], name: str) -> Any:
    """The test's field *name*: a key of the test, else of its ``vars`` mapping."""
    if name in test:
        return test[name]
    data = test.get("vars")
    return data.get(name) if isinstance(data, Mapping) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _request(spec: Mapping[str, Any], test: Mapping[str, Any]) -> tuple[str, dict[str, str], Any]:
    """The url, headers and body of *test*'s request to the endpoint of *spec*."""
    url = str(render(spec["url"], test))
    headers = {k: _text(render(v, test)) for k, v in (spec.get("headers") or {}).items()}
    return url, headers, render(spec.get("body"), test)


# -- on a worker thread ----------------------------------------------------------------

_client_lock = threading.Lock()
_client: dict[int, httpx.Client] = {}


def _http_client() -> httpx.Client:
    """One httpx.Client per process (connection reuse); a forked child makes its own."""
    import httpx

    pid = os.getpid()
    with _client_lock:
        if pid not in _client:
            _client.clear()
            _client[pid] = httpx.Client(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                follow_redirects=True,
            )
        return _client[pid]


def execute_http(
    spec: Mapping[str, Any], test: Mapping[str, Any], *, deadline: float | None = None
) -> Execution:
    """Send *test*'s request on this thread and judge the answer.

    deadline: ``time.monotonic()`` value at which the attempt's time limit runs out; the
    request never waits past it, whatever its own ``timeout_s``.
    """
    import httpx

    url, headers, body = _request(spec, test)
    timeout = float(spec.get("timeout_s", DEFAULT_TIMEOUT_S))
    limited = False
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RetryableExecutionError("the time limit ran out before the request was sent")
        if left < timeout:
            timeout, limited = left, True
    kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
    if body is not None:
        if isinstance(body, str):
            kwargs["content"] = body
        else:
            kwargs["json"] = body
    started = time.perf_counter()
    method = spec.get("method", "POST")
    try:
        with HttpRequest(method, url) as span:
            span.inject(headers)
            response = _http_client().request(method, url, **kwargs)
            span.answered(response.status_code)
    except httpx.TimeoutException as exc:
        if limited:
            raise RetryableExecutionError(
                f"no answer within the test's time limit ({timeout:.3g}s left of it; "
                f"timeout_s is {spec.get('timeout_s', DEFAULT_TIMEOUT_S)}): {type(exc).__name__}"
            ) from None
        raise RetryableExecutionError(
            f"timeout after {spec.get('timeout_s', DEFAULT_TIMEOUT_S)}s: {exc}"
        ) from None
    except httpx.HTTPError as exc:
        raise RetryableExecutionError(f"connection error: {type(exc).__name__}: {exc}") from None
    latency_ms = (time.perf_counter() - started) * 1000
    return http_execution(
        spec, response.status_code, response.reason_phrase, response.text, response.headers,
        latency_ms,
    )  # fmt: skip


# -- on the worker's event loop (see rhesis_pipeline.worker.inflight) ------------------


async def execute_http_async(
    spec: Mapping[str, Any], test: Mapping[str, Any], session: aiohttp.ClientSession
) -> Execution:
    """Send *test*'s request with the loop's *session* and judge the answer. The caller
    bounds the attempt by its time limit (cancellation)."""
    import aiohttp

    url, headers, body = _request(spec, test)
    timeout_s = float(spec.get("timeout_s", DEFAULT_TIMEOUT_S))
    kwargs: dict[str, Any] = {
        "headers": headers,
        "timeout": aiohttp.ClientTimeout(total=timeout_s),
    }
    if body is not None:
        if isinstance(body, str):
            kwargs["data"] = body.encode()
        else:
            kwargs["json"] = body
    started = time.perf_counter()
    method = spec.get("method", "POST")
    try:
        with HttpRequest(method, url) as span:
            span.inject(headers)
            async with session.request(method, url, **kwargs) as response:
                raw = await response.read()
                code, reason, answer_headers = (
                    response.status,
                    response.reason or "",
                    response.headers,
                )
            span.answered(code)
    except asyncio.TimeoutError:
        raise RetryableExecutionError(
            f"timeout after {spec.get('timeout_s', DEFAULT_TIMEOUT_S)}s"
        ) from None
    except aiohttp.ClientError as exc:
        raise RetryableExecutionError(f"connection error: {type(exc).__name__}: {exc}") from None
    latency_ms = (time.perf_counter() - started) * 1000
    text = raw.decode("utf-8", errors="replace")
    return http_execution(spec, code, reason, text, answer_headers, latency_ms)
