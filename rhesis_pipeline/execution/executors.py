"""Executors: how one test is run.

The executor spec is stored on the run (``test_runs.executor``) and applied by
``execute_single_test`` to each test.

``{"type": "python", "target": "module:function"}`` (or just ``"module:function"``)
    Calls ``function(test)`` with the test mapping; the function must be importable by
    the workers. It may return a mapping with any of ``passed`` (true or false),
    ``output``, ``metrics``; a bool (passed or failed); or anything else, which is the
    output (passed). ``None`` is a failure ("the target returned None"), as in the old
    system; a ``passed`` that is not a boolean ends the test as ``error`` (not retried).
    An exception fails the attempt, which is retried (one warning line, no traceback). A
    target the worker cannot import ends the test as ``error`` at once (not retried),
    with the reason.

``{"type": "http", "url", "method", "headers", "body", "response_path", "timeout_s"}``
    Sends one request with ``{{field}}`` placeholders in url, headers and body replaced
    by the test's fields (``{{prompt}}``, any other; a field under the test's ``vars``
    too). One httpx client per worker process
    reuses connections. Connection errors, timeouts, 5xx and 429 fail the attempt and are
    retried with the run's backoff; any other 4xx is not retried and ends the test as
    ``error`` with the status and a short excerpt of the body. The answer is the value at
    ``response_path`` (JSONPath) in a JSON response, or the whole body. Latency is
    recorded as the test's duration.

The result of an execution is an :class:`Execution`; its status is never None.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dramatiq.errors import Retry

from rhesis_pipeline.errors import DatabaseUnavailable, InvalidSubmission

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: Characters of a response body quoted in an error.
EXCERPT = 200


class InvalidExecutor(InvalidSubmission):
    """The executor spec is malformed or its target cannot be imported."""


class ExecutionError(Exception):
    """An attempt failed; ``str()`` is the one-line reason stored on the result."""


class RetryableExecutionError(ExecutionError, Retry):
    """The attempt failed for a reason that may pass (connection, 5xx, 429): retried.

    A dramatiq ``Retry``: retried (and counted) like any exception, but the worker does not
    log it with a traceback — an expected failure is one warning line (see tasks.py).
    """

    #: The run's backoff applies (dramatiq's Retry may carry a delay of its own).
    delay = None

    def __init__(self, message: str) -> None:
        Retry.__init__(self, message)

    def __str__(self) -> str:
        return str(self.message)


class RateLimited(RetryableExecutionError):
    """The endpoint answered 429 (or 503 with ``Retry-After``): the attempt is put back,
    not counted; ``retry_after_s`` is how long the endpoint asked everyone to wait."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentExecutionError(ExecutionError):
    """The attempt failed for a reason a retry will not change (4xx, a python target
    that the worker cannot import): not retried."""


class TargetRaised(RetryableExecutionError):
    """A python target raised: retried like any failed attempt. ``str()`` is
    ``"Type: text"`` (the stored error); ``where`` is the line of the target that
    raised, for the log. The traceback is logged at DEBUG only (``dramatiq -v``): an
    expected failure of a test is one line, not a traceback."""

    def __init__(self, exc: Exception) -> None:
        text = str(exc).strip()
        super().__init__(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        frames = traceback.extract_tb(exc.__traceback__)
        last = frames[-1] if frames else None
        self.where = f"{last.filename}:{last.lineno} in {last.name}" if last else None


@dataclass
class Execution:
    status: str  # "passed" or "failed"
    output: Any = None
    metrics: Any = None
    duration_ms: float = 0.0
    #: The parsed JSON response (HTTP) or the returned value (python), for metrics.
    document: Any = None
    #: Why it failed, when no metric says so ("the target returned None").
    reason: str | None = None


def validate_executor(executor: str | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise and check an executor spec; raises InvalidExecutor naming the problem."""
    if isinstance(executor, str):
        spec: dict[str, Any] = {"type": "python", "target": executor}
    elif isinstance(executor, Mapping):
        spec = dict(executor)
    else:
        raise InvalidExecutor(
            f"executor must be 'module:function' or a mapping, got {type(executor).__name__}"
        )
    kind = spec.get("type")
    if kind == "python":
        unknown = sorted(set(spec) - {"type", "target"})
        if unknown:
            raise InvalidExecutor(
                f"executor: unknown key(s) {', '.join(unknown)}; allowed: type, target"
            )
        target = spec.get("target")
        if not isinstance(target, str) or not _TARGET.match(target):
            raise InvalidExecutor(f"executor.target {target!r} must be 'module.path:function'")
        resolve_target(target)  # importable here, or a clear error before anything is stored
        return spec
    if kind == "http":
        allowed = {"type", "url", "method", "headers", "body", "response_path", "timeout_s",
                   *LIMIT_KEYS}  # fmt: skip
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise InvalidExecutor(
                f"executor: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
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
            "timeout_s": float(spec.get("timeout_s", 30)),
            **validate_limits(spec),
        }
    raise InvalidExecutor(f"executor.type {kind!r} is not supported; use 'python' or 'http'")


#: An HTTP endpoint's limits, shared by every worker (see :mod:`.endpoint_limits`).
LIMIT_KEYS = ("max_concurrency", "requests_per_minute", "limit_key")
#: Largest max_concurrency and requests_per_minute accepted.
MAX_LIMIT = 1_000_000


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
                f"got {_short_repr(key)}"
            )
        limits["limit_key"] = key.strip()
    return limits


_HOST = re.compile(r"[\w.-]+|\[?[0-9A-Fa-f:.]+\]?")


def url_problem(url: str) -> str | None:
    """Why the endpoint URL *url* (``{{field}}`` placeholders allowed) cannot be requested,
    as the end of a sentence ("is not …"), or None. Checked when a run is submitted, so a
    URL that httpx would refuse, or that names no reachable port, fails validation rather
    than every test."""
    import httpx

    hint = "; write it like https://host:port/path"
    concrete = _PLACEHOLDER.sub("1", url)
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


@lru_cache(maxsize=256)
def resolve_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InvalidExecutor(
            f"executor.target {target!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); it must be importable by the workers"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InvalidExecutor(
                f"executor.target {target!r}: module {module_name!r} has no attribute {attr!r}"
            )
    if not callable(obj):
        raise InvalidExecutor(f"executor.target {target!r} is not callable")
    return obj


def execute(
    spec: Mapping[str, Any], test: Mapping[str, Any], *, deadline: float | None = None
) -> Execution:
    """Run *test* through the executor *spec*. Exceptions propagate (the attempt failed).

    deadline: ``time.monotonic()`` value at which the attempt's time limit runs out. An
    HTTP request never waits past it, whatever its own ``timeout_s``: dramatiq's time
    limit is an asynchronous exception, which cannot interrupt a thread blocked in a
    socket read. (A python target is interrupted by the time limit between bytecodes.)
    """
    if spec.get("type") == "http":
        return execute_http(spec, test, deadline=deadline)
    try:
        fn = resolve_target(spec["target"])
    except InvalidExecutor as exc:
        # Checked when the run was submitted, but this worker cannot import it (another
        # directory, a missing dependency): every attempt here would fail the same way.
        raise PermanentExecutionError(str(exc)) from None
    started = time.perf_counter()
    try:
        value = fn(dict(test))
        if inspect.isawaitable(value):  # an async def target on a thread (careful path)
            value = asyncio.run(_awaited(value))
    except (Retry, DatabaseUnavailable):
        # The target asks for a retry itself (dramatiq.Retry), or the pipeline's database
        # is down (RhesisRetries releases the message without counting an attempt).
        raise
    except Exception as exc:
        raise TargetRaised(exc) from exc
    duration_ms = (time.perf_counter() - started) * 1000
    return interpret(value, duration_ms)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def interpret(value: Any, duration_ms: float = 0.0) -> Execution:
    """Turn a python target's return value into an Execution (see module docstring)."""
    if value is None:
        return Execution("failed", duration_ms=duration_ms, reason="the target returned None")
    if isinstance(value, bool):
        return Execution(
            "passed" if value else "failed",
            duration_ms=duration_ms,
            reason=None if value else "the target returned False",
        )
    if isinstance(value, Mapping) and ({"passed", "output", "metrics"} & set(value)):
        passed = value.get("passed", True)
        if not isinstance(passed, bool):
            raise PermanentExecutionError(
                f"the target returned passed={_short_repr(passed)}: passed must be true or false"
            )
        metrics = value.get("metrics")
        output = value.get("output")
        return Execution(
            "passed" if passed else "failed",
            output=output,
            metrics=dict(metrics) if isinstance(metrics, Mapping) else metrics,
            duration_ms=duration_ms,
            document=output,
            reason=None if passed else "the target returned passed=false",
        )
    return Execution("passed", output=value, duration_ms=duration_ms, document=value)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- HTTP ------------------------------------------------------------------------------

_client_lock = threading.Lock()
_client: dict[int, Any] = {}


def _http_client():
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


def render(template: Any, test: Mapping[str, Any]) -> Any:
    """Replace ``{{field}}`` in every string of *template* with the test's field. A string
    that is only a placeholder takes the field's value as it is (a number stays one)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template.strip())
        if whole and template.strip() == template:
            return field(test, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(field(test, m.group(1))), template)
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


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT] + "…"


def execute_http(
    spec: Mapping[str, Any], test: Mapping[str, Any], *, deadline: float | None = None
) -> Execution:
    import httpx

    url = render(spec["url"], test)
    headers = {k: _text(render(v, test)) for k, v in (spec.get("headers") or {}).items()}
    body = render(spec.get("body"), test)
    timeout = float(spec.get("timeout_s", 30))
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
    try:
        response = _http_client().request(spec.get("method", "POST"), str(url), **kwargs)
    except httpx.TimeoutException as exc:
        if limited:
            raise RetryableExecutionError(
                f"no answer within the test's time limit ({timeout:.3g}s left of it; "
                f"timeout_s is {spec.get('timeout_s', 30)}): {type(exc).__name__}"
            ) from None
        raise RetryableExecutionError(
            f"timeout after {spec.get('timeout_s', 30)}s: {exc}"
        ) from None
    except httpx.HTTPError as exc:
        raise RetryableExecutionError(f"connection error: {type(exc).__name__}: {exc}") from None
    latency_ms = (time.perf_counter() - started) * 1000
    return http_execution(
        spec, response.status_code, response.reason_phrase, response.text, response.headers,
        latency_ms,
    )  # fmt: skip


#: Seconds a 429 without any Retry-After header pauses its endpoint.
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest pause a Retry-After header may ask for (a bad header must not stop a run).
MAX_RETRY_AFTER_S = 300.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long an answer asks its client to wait, in seconds, or None if it does not say:
    ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date), or, when a
    ``x-ratelimit-remaining-*`` header is 0, its ``x-ratelimit-reset-*`` (``1s``,
    ``6m0s``, ``20ms``). Capped at MAX_RETRY_AFTER_S."""
    lower = {k.lower(): v for k, v in headers.items()}
    found: float | None = None
    try:
        if "retry-after-ms" in lower:
            found = float(lower["retry-after-ms"]) / 1000
        elif "retry-after" in lower:
            value = lower["retry-after"].strip()
            try:
                found = float(value)
            except ValueError:
                from email.utils import parsedate_to_datetime

                found = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        for name, value in lower.items():
            if name.startswith("x-ratelimit-remaining-") and value.strip() == "0":
                reset = lower.get(name.replace("remaining", "reset"), "")
                parts = _DURATION_PART.findall(reset)
                unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
                seconds = sum(float(n) * unit[u] for n, u in parts)
                if parts:
                    found = max(found or 0.0, seconds)
    if found is None:
        return None
    return min(max(found, 0.0), MAX_RETRY_AFTER_S)


def http_execution(
    spec: Mapping[str, Any],
    code: int,
    reason: str,
    text: str,
    headers: Mapping[str, str],
    latency_ms: float,
) -> Execution:
    """The Execution of an HTTP answer (shared by the threaded and the asyncio client)."""
    if code == 429 or (code == 503 and retry_after_s(headers) is not None):
        wait = retry_after_s(headers)
        raise RateLimited(
            f"HTTP {code} {reason}: {excerpt(text)}",
            DEFAULT_RETRY_AFTER_S if wait is None else wait,
        )
    if code >= 500:
        raise RetryableExecutionError(f"HTTP {code} {reason}: {excerpt(text)}")
    if code >= 400:
        raise PermanentExecutionError(f"HTTP {code} {reason}: {excerpt(text)}")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    answer: Any = text if document is None else document
    path = spec.get("response_path")
    if path:
        if document is None:
            raise PermanentExecutionError(
                f"response_path {path!r} needs a JSON response; got: {excerpt(text)}"
            )
        matches = _json_path(path).find(document)
        if not matches:
            raise PermanentExecutionError(
                f"response_path {path!r} matched nothing in the response: {excerpt(text)}"
            )
        answer = matches[0].value
    return Execution("passed", output=answer, duration_ms=latency_ms, document=document)


# -- asyncio: hundreds in flight per process (see rhesis_pipeline.worker.inflight) -------------


def runs_async(spec: Mapping[str, Any]) -> bool:
    """Whether *spec* is I/O-bound and runs on the worker's event loop: HTTP, or a python
    target that is an ``async def`` (one the worker cannot import runs on a thread,
    which stores the reason)."""
    if spec.get("type") == "http":
        return True
    try:
        return inspect.iscoroutinefunction(resolve_target(spec["target"]))
    except (InvalidExecutor, KeyError):
        return False


async def execute_async(
    spec: Mapping[str, Any], test: Mapping[str, Any], session: Any
) -> Execution:
    """:func:`execute` on an event loop; *session* is the loop's ``aiohttp.ClientSession``.
    The caller bounds the attempt by its time limit (cancellation)."""
    if spec.get("type") == "http":
        return await execute_http_async(spec, test, session)
    fn = resolve_target(spec["target"])
    started = time.perf_counter()
    try:
        value = await fn(dict(test))
    except (Retry, DatabaseUnavailable):
        raise
    except Exception as exc:
        raise TargetRaised(exc) from exc
    return interpret(value, (time.perf_counter() - started) * 1000)


async def execute_http_async(
    spec: Mapping[str, Any], test: Mapping[str, Any], session: Any
) -> Execution:
    import aiohttp

    url = render(spec["url"], test)
    headers = {k: _text(render(v, test)) for k, v in (spec.get("headers") or {}).items()}
    body = render(spec.get("body"), test)
    timeout_s = float(spec.get("timeout_s", 30))
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
    try:
        async with session.request(spec.get("method", "POST"), str(url), **kwargs) as response:
            raw = await response.read()
            code, reason, answer_headers = response.status, response.reason or "", response.headers
    except asyncio.TimeoutError:
        raise RetryableExecutionError(f"timeout after {spec.get('timeout_s', 30)}s") from None
    except aiohttp.ClientError as exc:
        raise RetryableExecutionError(f"connection error: {type(exc).__name__}: {exc}") from None
    latency_ms = (time.perf_counter() - started) * 1000
    text = raw.decode("utf-8", errors="replace")
    return http_execution(spec, code, reason, text, answer_headers, latency_ms)


@lru_cache(maxsize=256)
def _json_path(path: str):
    from jsonpath_ng.ext import parse

    return parse(path)
