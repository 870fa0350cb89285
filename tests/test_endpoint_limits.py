"""Endpoint limits (issue #22), without workers: Retry-After parsing, the suite's limit
keys, and the shared budget in Postgres (``endpoint_exchange``) as two workers see it."""

from __future__ import annotations

import email.utils
import time

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import monitor as monitor_cli
from rhesis_pipeline.execution.attempt import InvalidExecutor, RateLimited
from rhesis_pipeline.execution.executors import validate_executor
from rhesis_pipeline.execution.http_answer import http_execution, retry_after_s
from rhesis_pipeline.storage import statements
from rhesis_pipeline.worker.endpoint_limits import EndpointLimit, limit_for, origin

URL = "http://127.0.0.1:9/v1/chat"


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "1", "retry-after-ms": "1500"}, 1.5),  # the finer one wins
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m30s"}, 150.0),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s"}, None),
        ({"Retry-After": "tomorrow-ish"}, None),
        ({"Retry-After": "999999"}, 300.0),  # capped: a bad header must not stop a run
        ({}, None),
    ],
)
def test_retry_after_in_its_forms(headers, expected):
    assert retry_after_s(headers) == expected


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 <= retry_after_s({"Retry-After": when}) <= 5.0


def test_a_429_or_a_503_with_retry_after_is_rate_limited_with_its_pause():
    spec = {"url": URL}
    with pytest.raises(RateLimited) as limited:
        http_execution(spec, 429, "Too Many Requests", "slow down", {"Retry-After": "2"}, 1.0)
    assert limited.value.retry_after_s == 2.0
    with pytest.raises(RateLimited) as unsaid:
        http_execution(spec, 429, "Too Many Requests", "", {}, 1.0)
    assert unsaid.value.retry_after_s == 1.0  # the default pause
    with pytest.raises(RateLimited):
        http_execution(spec, 503, "Service Unavailable", "", {"retry-after-ms": "100"}, 1.0)


def test_limit_keys_are_validated_and_the_key_is_the_origin_or_limit_key():
    spec = validate_executor(
        {
            "type": "http",
            "url": "https://API.example.com/v1/chat",
            "max_concurrency": 400,
            "requests_per_minute": 2400,
        }
    )
    assert limit_for(spec) == EndpointLimit("https://api.example.com:443", 400, True, 2400)
    shared = validate_executor({"type": "http", "url": URL, "limit_key": " openai-key-1 "})
    assert limit_for(shared, default_max=64) == EndpointLimit("openai-key-1", 64, False, None)
    assert origin("http://h:8080/x?y") == "http://h:8080"
    for bad, fragment in [
        ({"max_concurrency": 0}, "max_concurrency must be a whole number from 1"),
        ({"max_concurrency": 2.5}, "max_concurrency must be a whole number"),
        ({"requests_per_minute": True}, "requests_per_minute must be a whole number"),
        ({"limit_key": ""}, "limit_key must be a non-empty string"),
    ]:
        with pytest.raises(InvalidExecutor, match=fragment):
            validate_executor({"type": "http", "url": URL, **bad})


def exchange(worker: str, key: str = "k", **asked) -> dict:
    params = {
        "worker": worker,
        "keys": [key],
        "max_concurrency": [asked.get("max_concurrency", 5)],
        "declared": [asked.get("declared", True)],
        "rpm": [asked.get("rpm")],
        "want": [asked.get("want", 0)],
        "release": [asked.get("release", 0)],
        "waiting": [asked.get("want", 0)],
        "successes": [asked.get("successes", 0)],
        "throttles": [asked.get("throttles", 0)],
        "pause_s": [asked.get("pause_s", 0.0)],
        "lease_timeout_s": asked.get("lease_timeout_s", 30.0),
    }
    ((_key, granted, held, paused_for_s, current, others),) = statements.run_prepared(
        "endpoint_exchange", params
    )
    return {"granted": granted, "held": held, "paused": paused_for_s, "limit": current,
            "others_waiting": others}  # fmt: skip


def test_two_workers_share_one_cap(database_url):
    # Given: a key with max_concurrency 5.
    a = exchange("a", want=4)
    assert (a["granted"], a["held"]) == (4, 4)
    # Then: the other worker gets only what is left, and sees nobody else waiting.
    b = exchange("b", want=4)
    assert (b["granted"], b["held"]) == (1, 1)
    # When: A gives back 2; B (3 still waiting) gets them; A sees B waiting meanwhile.
    assert exchange("a", release=2)["others_waiting"] == 3
    assert exchange("b", want=3)["granted"] == 2
    # A lease not renewed within the lease timeout no longer counts (a dead worker).
    assert exchange("c", want=5, lease_timeout_s=0.0)["granted"] == 5


def test_a_429_pauses_the_key_for_everyone_and_halves_the_adaptive_limit(database_url):
    assert exchange("a", want=5, max_concurrency=10, declared=True)["granted"] == 5
    paused = exchange("a", release=5, throttles=1, pause_s=2.0, max_concurrency=10)
    assert 1.5 < paused["paused"] <= 2.0 and paused["limit"] == 7.5
    # Another worker asks during the pause: nothing.
    other = exchange("b", want=3, max_concurrency=10)
    assert other["granted"] == 0 and other["paused"] > 1.0
    # Successes right after a decrease do not grow it (3 s to settle).
    assert exchange("b", successes=5, max_concurrency=10)["limit"] == 7.5


def test_an_undeclared_key_starts_at_8_and_a_declared_rate_is_a_token_bucket(database_url):
    assert exchange("a", "undeclared", want=20, max_concurrency=64, declared=False)["granted"] == 8
    # Additive increase: one more slot per current limit's worth of successes.
    grown = exchange("a", "undeclared", successes=8, max_concurrency=64, declared=False)
    assert grown["limit"] == 9.0
    # 240 requests per minute: 3.8 per second (95 %), a burst of one.
    first = exchange("a", "rpm", want=10, max_concurrency=100, rpm=240)
    assert first["granted"] == 0  # the bucket starts empty
    granted = 0
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        granted += exchange("a", "rpm", want=1, max_concurrency=100, rpm=240)["granted"]
        time.sleep(0.05)
    assert 4 <= granted <= 8, granted  # about 3.8/s over 1.6 s (plus the burst)


def test_what_the_workers_learned_is_shown_by_status_metrics_and_the_dashboard(database_url):
    from rhesis_pipeline.dashboard.app import create_app
    from rhesis_pipeline.dashboard.state import DashboardConfig
    from rhesis_pipeline.monitor import status
    from rhesis_pipeline.monitor.prometheus import exposition

    from .support.asgi import asgi_client

    # Given: a worker holding 3 of a declared key's 10 slots, after a 429 (paused 30 s).
    exchange("w1", "https://llm.example:443", want=3, max_concurrency=10)
    exchange("w1", "https://llm.example:443", throttles=1, pause_s=30.0, max_concurrency=10)
    # Then: status, /metrics and the dashboard's overview show it per key.
    (shown,) = status().snapshot.endpoints
    assert (shown.key, shown.in_flight, shown.max_concurrency, shown.declared) == (
        "https://llm.example:443", 3, 10, True,
    )  # fmt: skip
    assert shown.current_limit == 7.5 and shown.throttled_last_minute == 1
    assert 25 < shown.paused_for_s <= 30
    body = exposition()[0].decode()
    assert 'rhesis_endpoint_in_flight{key="https://llm.example:443"} 3.0' in body
    assert 'rhesis_endpoint_throttled_total{key="https://llm.example:443"} 1.0' in body
    with asgi_client(create_app(DashboardConfig())) as http:
        page = http.get("/").text
    assert "https://llm.example:443" in page and "7.5 / 10" in page
    text = CliRunner().invoke(monitor_cli.main, ["status"]).output
    assert "ENDPOINTS" in text and "https://llm.example:443" in text and "7.5/10" in text
    # A tenant's status and dashboard do not list endpoint keys (shared by tenants).
    assert status(organization_id="acme").snapshot.endpoints == []
