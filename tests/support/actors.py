"""Actors used by tests only, loaded by test workers next to rhesis_pipeline.actors."""

from __future__ import annotations

import json
import logging
import os
import uuid

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import text

import rhesis_pipeline.actors  # noqa: F401  (installs the broker)
from rhesis_pipeline.runs.complete import on_run_finished
from rhesis_pipeline.storage import db

logger = logging.getLogger("tests.support.actors")

SMOKE_QUEUE = "rhesis-test-smoke"
#: Ten queues: dramatiq-pg's default pool of 16 connections ran out with these.
MANY_QUEUES = tuple(f"rhesis-test-q{i}" for i in range(10))

_RECORD = text(
    "INSERT INTO public.test_records (key, payload, pid) "
    "VALUES (:key, CAST(:payload AS jsonb), :pid)"
)


def _record(key: str, payload: dict) -> None:
    with db.begin() as conn:
        conn.execute(_RECORD, {"key": key, "payload": json.dumps(payload), "pid": os.getpid()})


@dramatiq.actor(queue_name=SMOKE_QUEUE, max_retries=0)
def record(key: str, value=None) -> None:
    """Store *value* and the message's options under *key*, logging one line."""
    message = CurrentMessage.get_current_message()
    logger.info("recording %s", key)
    _record(key, {"value": value, "options": message.options, "message_id": message.message_id})


def _make_queue_actor(queue: str):
    def on_queue(key: str) -> None:
        _record(key, {"queue": queue})

    on_queue.__name__ = f"record_on_{queue.replace('-', '_')}"
    return dramatiq.actor(on_queue, queue_name=queue, max_retries=0)


QUEUE_ACTORS = {q: _make_queue_actor(q) for q in MANY_QUEUES}


@on_run_finished
def record_hook_call(summary) -> None:
    """Counts callback executions: one row per call."""
    _record(f"hook:{summary.id}:{uuid.uuid4()}", summary.as_dict())
    if summary.name == "hook-raises":
        raise RuntimeError("hook failed on purpose")


@dramatiq.actor(queue_name=SMOKE_QUEUE, max_retries=0)
def stop_heartbeat() -> None:
    """Stop this worker process's heartbeat thread (the process lives on): what a crashed
    heartbeat thread looks like to the liveness probe."""
    from rhesis_pipeline.worker import registry

    registration = registry._current["registration"]
    registration._stop.set()
    registration._thread.join(10)
    logger.info("heartbeat thread of worker %s stopped", registration.worker_id)
