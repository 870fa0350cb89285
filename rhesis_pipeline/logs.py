"""Logging, configured in one place.

Every log record gets two attributes, ``message_id`` and ``actor_name``: the dramatiq
message being processed by the current thread, or ``-`` outside a message. They are set
by :class:`rhesis_pipeline.worker.middleware.log_context.LogContext` and added to records by a
record factory, so lines from any library (dramatiq, SQLAlchemy, user code) carry them.
The message's run, test and organization are added by a filter of the root handlers
(:class:`ContextFields`), after any ``extra`` of the call, which takes precedence.

Worker processes: dramatiq's CLI configures the root logger to write to a pipe to the
parent process before it imports our module; :func:`configure_worker_logging` (called
from the middleware's ``after_process_boot``) swaps the format on those handlers.
Other processes (CLI, web application) call :func:`configure_logging`.

``RHESIS_LOG_FORMAT=json`` makes every line one JSON object (:class:`JsonFormatter`):
``time``, ``level``, ``logger``, ``message``, ``pid``, ``thread``, and where known
``message_id``, ``actor``, ``run_id``, ``test_id``, ``organization``, ``worker_id``, and
when the process traces (:mod:`rhesis_pipeline.tracing`) ``trace_id`` and ``span_id`` of
the span current where the line was written (a test's attempt: the line is found from its
trace, and the other way round); a traceback is the ``exc_info`` field, never lines of its
own. The run and test come from
the message being processed, or from ``extra={"run_id": …}`` of a line written outside
one (the outcome writer's).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from rhesis_pipeline.tracing.spans import current_ids

#: Format of every worker line: time, level, process, the message's id and actor, logger, text.
WORKER_LOG_FORMAT = (
    "%(asctime)s %(levelname)-7s [pid %(process)d %(threadName)s] "
    "[msg %(message_id)s %(actor_name)s] %(name)s: %(message)s"
)
#: Format of other processes (CLI); the same attributes are available to custom formats.
CLI_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context = threading.local()
_installed = False


#: Record attributes a JSON line carries when they are set (context or ``extra``).
CONTEXT_FIELDS = ("run_id", "test_id", "organization")
#: Record attributes set from the current span when the process traces.
TRACE_FIELDS = ("trace_id", "span_id")


def set_message_context(
    message_id: str,
    actor_name: str,
    *,
    run_id: str | None = None,
    test_id: str | None = None,
    organization: str | None = None,
) -> None:
    _context.message_id = message_id
    _context.actor_name = actor_name
    _context.fields = {
        k: v
        for k, v in (("run_id", run_id), ("test_id", test_id), ("organization", organization))
        if v is not None
    }


def clear_message_context() -> None:
    _context.message_id = None
    _context.actor_name = None
    _context.fields = {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        from rhesis_pipeline.identity import worker_id

        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "thread": record.threadName,
            "worker_id": worker_id(),
        }
        message_id = getattr(record, "message_id", "-")
        if message_id != "-":
            line["message_id"] = message_id
            line["actor"] = getattr(record, "actor_name", None)
        for key in (*CONTEXT_FIELDS, *TRACE_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: str, text_format: str) -> logging.Formatter:
    """The formatter of *log_format* ("json", or "text" with *text_format*)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def _install_record_factory() -> None:
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.message_id = getattr(_context, "message_id", None) or "-"
        record.actor_name = getattr(_context, "actor_name", None) or "-"
        # The context's run_id, test_id … are added later, by ContextFields: the factory
        # runs before ``extra`` is applied, and logging refuses an ``extra`` key that the
        # record already has ("Attempt to overwrite 'run_id' in LogRecord").
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class ContextFields(logging.Filter):
    """Adds the message's context fields (``run_id``, ``test_id``, ``organization``) to a
    record that does not have them from ``extra``, and the current span's ids when the
    process traces. A filter of every root handler: it
    runs in the thread that logs, after ``extra`` is applied, so ``extra`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in getattr(_context, "fields", {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        ids = current_ids()  # None unless the process traces and a span is current
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


def _add_context_fields(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        if not any(isinstance(f, ContextFields) for f in handler.filters):
            handler.addFilter(ContextFields())


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the root logger of a non-worker process (stderr, our format)."""
    _install_record_factory()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=CLI_LOG_FORMAT)
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    _add_context_fields(root.handlers)
    root.setLevel(level)
    _quiet_libraries()


def configure_worker_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Reformat the handlers dramatiq's CLI installed in a worker process (or periodiq's
    in the scheduler)."""
    _install_record_factory()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=WORKER_LOG_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter(log_format, WORKER_LOG_FORMAT))
    _add_context_fields(root.handlers)
    # Respect dramatiq's -v (DEBUG); otherwise use ours.
    if root.level != logging.DEBUG:
        root.setLevel(level)
    _quiet_libraries()


def _quiet_libraries() -> None:
    # dramatiq-pg logs every consumed message at INFO; keep that for -v.
    logging.getLogger("dramatiq_pg").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # Alembic narrates every step at INFO; `migrate` prints its own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)
