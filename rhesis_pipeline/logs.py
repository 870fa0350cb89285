"""Logging, configured in one place.

Every log record gets two attributes, ``message_id`` and ``actor_name``: the dramatiq
message being processed by the current thread, or ``-`` outside a message. They are set
by :class:`rhesis_pipeline.middleware.log_context.LogContext` and added to records by a
record factory, so lines from any library (dramatiq, SQLAlchemy, user code) carry them.

Worker processes: dramatiq's CLI configures the root logger to write to a pipe to the
parent process before it imports our module; :func:`configure_worker_logging` (called
from the middleware's ``after_process_boot``) swaps the format on those handlers.
Other processes (CLI, web application) call :func:`configure_logging`.
"""

from __future__ import annotations

import logging
import threading

#: Format of every worker line: time, level, process, the message's id and actor, logger, text.
WORKER_LOG_FORMAT = (
    "%(asctime)s %(levelname)-7s [pid %(process)d %(threadName)s] "
    "[msg %(message_id)s %(actor_name)s] %(name)s: %(message)s"
)
#: Format of other processes (CLI); the same attributes are available to custom formats.
CLI_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context = threading.local()
_installed = False


def set_message_context(message_id: str, actor_name: str) -> None:
    _context.message_id = message_id
    _context.actor_name = actor_name


def clear_message_context() -> None:
    _context.message_id = None
    _context.actor_name = None


def _install_record_factory() -> None:
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        record.message_id = getattr(_context, "message_id", None) or "-"
        record.actor_name = getattr(_context, "actor_name", None) or "-"
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger of a non-worker process (stderr, our format)."""
    _install_record_factory()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=CLI_LOG_FORMAT)
    root.setLevel(level)
    _quiet_libraries()


def configure_worker_logging(level: str = "INFO") -> None:
    """Reformat the handlers dramatiq's CLI installed in a worker process."""
    _install_record_factory()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=WORKER_LOG_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
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
