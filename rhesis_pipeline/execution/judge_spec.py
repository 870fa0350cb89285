"""The ``llm_judge`` metric's spec: its keys, their defaults, and the judge's headers.

A suite declares the metric::

    - type: llm_judge
      name: faithful                       # optional; default "llm_judge"
      rubric: The answer names "Paris" and says nothing false.
      threshold: 0.7                       # optional; default 0.5; passes when score >= it
      endpoint:                            # an OpenAI-compatible chat-completions endpoint
        url: https://api.openai.com/v1/chat/completions     # required
        model: gpt-4o-mini                 # optional (some servers serve one model)
        headers: {Authorization: "Bearer {{env:OPENAI_API_KEY}}"}
        timeout_s: 60                      # optional; seconds for the judge's answer
        max_concurrency: 8                 # optional; the endpoint limits of the judge's
        requests_per_minute: 500           # calls, shared by every worker (as a test's)
        limit_key: openai-key-1            # optional; default: the url's origin
        json_mode: true                    # optional; send response_format json_object

**Secrets.** ``{{env:NAME}}`` in a header value is replaced by the environment variable
NAME *in the worker, when the call is made* (:func:`resolve_headers`): the suite file and
the database hold the placeholder, never the key. A variable missing in the worker is the
test's ``error`` naming it (not retried: a retry in the same process would not find it
either).

The call and the verdict are in :mod:`rhesis_pipeline.execution.judge`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from rhesis_pipeline.execution.attempt import InvalidExecutor, PermanentExecutionError
from rhesis_pipeline.execution.http_endpoint import MAX_LIMIT, url_problem
from rhesis_pipeline.execution.values import short_repr

#: Passing score when the metric gives no ``threshold``.
DEFAULT_THRESHOLD = 0.5
#: Seconds the judge may take to answer unless ``endpoint.timeout_s`` says otherwise
#: (longer than a test's 30 s default: a judge reads the whole answer).
DEFAULT_TIMEOUT_S = 60.0
#: Longest ``timeout_s`` accepted, in seconds.
MAX_TIMEOUT_S = 3600
#: Keys of the metric, and of its ``endpoint``.
METRIC_KEYS = ("type", "name", "endpoint", "rubric", "threshold")
ENDPOINT_KEYS = (
    "url",
    "model",
    "headers",
    "timeout_s",
    "max_concurrency",
    "requests_per_minute",
    "limit_key",
    "json_mode",
)
#: ``{{env:NAME}}`` in a header value: the worker's environment variable NAME.
ENV_PLACEHOLDER = re.compile(r"\{\{\s*env:([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class InvalidJudge(InvalidExecutor):
    """An ``llm_judge`` metric is malformed. ``key`` is the path inside the metric
    (``endpoint.url``), ``problem`` what is wrong and how to fix it; ``str()`` is one line."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"llm_judge {key}: {problem}")
        self.key = key
        self.problem = problem


def validate_judge(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised ``llm_judge`` metric *spec*: defaults filled in (name "llm_judge",
    threshold DEFAULT_THRESHOLD, endpoint.headers {}, timeout_s DEFAULT_TIMEOUT_S,
    json_mode true; absent limits and model stay absent). Idempotent. Raises
    :class:`InvalidJudge` naming the first key that is wrong and the fix."""
    if not isinstance(spec, Mapping):
        raise InvalidJudge("(metric)", f"must be a mapping, got {short_repr(spec)}")
    _only(spec, METRIC_KEYS, "(metric)")
    if spec.get("type", "llm_judge") != "llm_judge":
        raise InvalidJudge("type", f"must be llm_judge, got {short_repr(spec.get('type'))}")
    name = spec.get("name", "llm_judge")
    if not isinstance(name, str) or not name.strip():
        raise InvalidJudge("name", f"must be non-empty text, got {short_repr(name)}")
    rubric = spec.get("rubric")
    if not isinstance(rubric, str) or not rubric.strip():
        raise InvalidJudge(
            "rubric",
            f"must be non-empty text saying what a good answer does, got {short_repr(rubric)}",
        )
    threshold = spec.get("threshold", DEFAULT_THRESHOLD)
    if not finite_number(threshold) or not 0 <= threshold <= 1:
        raise InvalidJudge(
            "threshold", f"must be a number from 0 to 1, got {short_repr(threshold)}"
        )
    endpoint = spec.get("endpoint")
    if not isinstance(endpoint, Mapping):
        raise InvalidJudge(
            "endpoint",
            "must be a mapping with at least url (an OpenAI-compatible "
            f"chat-completions URL), got {short_repr(endpoint)}",
        )
    return {
        "type": "llm_judge",
        "name": name,
        "rubric": rubric,
        "threshold": float(threshold),
        "endpoint": _endpoint(endpoint),
    }


def _endpoint(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    _only(endpoint, ENDPOINT_KEYS, "endpoint")
    url = endpoint.get("url")
    if not isinstance(url, str):
        raise InvalidJudge(
            "endpoint.url",
            f"is required: the chat-completions URL "
            f"(https://host/v1/chat/completions), got {short_repr(url)}",
        )
    problem = "has a {{…}} placeholder; write the URL itself" if "{{" in url else url_problem(url)
    if problem:
        raise InvalidJudge("endpoint.url", f"{url!r} {problem}")
    out: dict[str, Any] = {"url": url}
    model = endpoint.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidJudge("endpoint.model", f"must be non-empty text, got {short_repr(model)}")
        out["model"] = model
    out["headers"] = _headers(endpoint.get("headers"))
    timeout = endpoint.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not finite_number(timeout) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise InvalidJudge(
            "endpoint.timeout_s",
            f"must be a number of seconds above 0 and "
            f"at most {MAX_TIMEOUT_S}, got {short_repr(timeout)}",
        )
    out["timeout_s"] = float(timeout)
    for key in ("max_concurrency", "requests_per_minute"):
        value = endpoint.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
            raise InvalidJudge(
                f"endpoint.{key}",
                f"must be a whole number from 1 to {MAX_LIMIT:,}, got {short_repr(value)}",
            )
        out[key] = value
    limit_key = endpoint.get("limit_key")
    if limit_key is not None:
        if not isinstance(limit_key, str) or not limit_key.strip() or len(limit_key) > 200:
            raise InvalidJudge(
                "endpoint.limit_key",
                f"must be non-empty text of at most 200 characters, got {short_repr(limit_key)}",
            )
        out["limit_key"] = limit_key.strip()
    json_mode = endpoint.get("json_mode", True)
    if not isinstance(json_mode, bool):
        raise InvalidJudge(
            "endpoint.json_mode", f"must be true or false, got {short_repr(json_mode)}"
        )
    out["json_mode"] = json_mode
    return out


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidJudge(
            "endpoint.headers",
            f"must be a mapping of header names to text, got {short_repr(headers)}",
        )
    for name, value in headers.items():
        where = f"endpoint.headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidJudge(where, "is not a valid header name (letters, digits, -)")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise InvalidJudge(
                where, f"must be one line of text (quote it in YAML), got {short_repr(value)}"
            )
        for found in _ANY_PLACEHOLDER.findall(value):
            if not ENV_PLACEHOLDER.fullmatch(found):
                raise InvalidJudge(
                    where,
                    f"{found!r} is not a placeholder a judge header "
                    "takes; write {{env:NAME}} for environment variable NAME",
                )
    return dict(headers)


def _only(spec: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        raise InvalidJudge(
            where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def finite_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def judge_limit_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`rhesis_pipeline.worker.endpoint_limits.limit_for` takes for the judge's
    calls: its ``url`` (the key is the url's origin) or ``limit_key``, and its
    ``max_concurrency`` / ``requests_per_minute`` (absent: the default limit). A judge on
    the same origin as the tested endpoint shares that endpoint's budget, as it should: the
    provider counts both."""
    endpoint = validate_judge(spec)["endpoint"]
    keys = ("url", "max_concurrency", "requests_per_minute", "limit_key")
    return {k: endpoint[k] for k in keys if k in endpoint}


def resolve_headers(
    spec: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The judge's headers with ``{{env:NAME}}`` replaced from *environ* (the process's
    environment); a variable that is not set raises PermanentExecutionError naming it."""
    env = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise PermanentExecutionError(
                f"{label(spec)}: environment variable {name} (in endpoint.headers) is not set "
                "in the worker; set it where the workers run"
            )
        if "\r" in env[name] or "\n" in env[name]:
            raise PermanentExecutionError(
                f"{label(spec)}: environment variable {name} (in endpoint.headers) holds a line "
                "break, which a header cannot; remove it"
            )
        return env[name]

    return {k: ENV_PLACEHOLDER.sub(value, v) for k, v in spec["endpoint"]["headers"].items()}


def label(spec: Mapping[str, Any]) -> str:
    """How errors name the metric: ``llm_judge`` or ``llm_judge 'its name'``."""
    name = spec.get("name") or "llm_judge"
    return "llm_judge" if name == "llm_judge" else f"llm_judge {name!r}"
