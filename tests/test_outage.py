"""Outage: one log line when a loop loses the database, one when it is back; a bounded,
jittered backoff in between (pure logic, no database)."""

from __future__ import annotations

import logging

import pytest

from rhesis_pipeline.storage.outage import Outage


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    caplog.set_level(logging.WARNING, logger="rhesis_pipeline.storage.outage")
    outage = Outage("worker abc heartbeat", initial_s=0.1, max_s=1.0)

    outage.ok()  # no outage: nothing to say
    for _ in range(5):
        outage.failed(ConnectionError("server closed the connection unexpectedly\nmore"))
    assert outage.down
    outage.ok()
    outage.ok()

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0] == (
        "worker abc heartbeat lost the database: server closed the connection unexpectedly; "
        "reconnecting"
    )
    assert lines[1].startswith("worker abc heartbeat has the database again after ")
    assert lines[1].endswith("(5 failed tries)")
    assert not outage.down


def test_the_backoff_grows_to_its_bound_with_jitter():
    outage = Outage("x", initial_s=0.1, max_s=1.0)
    delays = [outage.failed(OSError("down")) for _ in range(12)]
    steps = [0.1, 0.2, 0.4, 0.8] + [1.0] * 8
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step
    outage.ok()
    assert outage.failed(OSError("down again")) <= 0.1  # a new outage starts small


@pytest.mark.parametrize("initial, maximum", [(0, 1), (-1, 1), (2, 1)])
def test_bad_bounds_are_refused(initial, maximum):
    with pytest.raises(ValueError, match="0 < initial_s <= max_s"):
        Outage("x", initial_s=initial, max_s=maximum)
