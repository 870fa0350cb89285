"""Refuses to start a worker process on a database that is not at this version's schema.

``dramatiq rhesis_pipeline.actors`` runs without ``rhesis-pipeline worker``'s checks: on a
database that was never migrated its consumers failed every few seconds, forever
(``relation "dramatiq.queue" does not exist``, with tracebacks). ``before_worker_boot``
runs the same check as ``rhesis-pipeline worker``
(:func:`rhesis_pipeline.storage.migrate.check_migrated`)
once per process, before any consumer or thread starts. On a database not at this
version's revision it logs one line naming the revision found, the one needed and the fix,
and ends the process with :data:`NotMigrated.exit_code <rhesis_pipeline.errors.NotMigrated>`
(4), no traceback. dramatiq's parent process then stops every other process and exits with
that code.

One line per command, not per process: only the command's first worker process
(multiprocessing's ``Process-1``) logs it; the others end with the same code silently.

A database that cannot be reached at boot is not checked (one warning): the worker starts
and waits for it as it would anyway.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

from dramatiq import Middleware
from dramatiq.broker import Broker
from dramatiq.worker import Worker

from rhesis_pipeline.errors import DatabaseUnavailable, NotMigrated
from rhesis_pipeline.storage import migrate

logger = logging.getLogger(__name__)


def _first_process() -> bool:
    """Whether this is the first worker process of its ``dramatiq`` command (or a process
    that is not one of its numbered children)."""
    name = multiprocessing.current_process().name
    return not name.startswith("Process-") or name == "Process-1"


class SchemaCheck(Middleware):
    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        try:
            migrate.check_migrated()
        except DatabaseUnavailable as exc:
            logger.warning("cannot check the database's schema version now: %s", exc)
        except NotMigrated as exc:
            if _first_process():
                logger.error("%s; this worker stops (exit code %d)", exc, NotMigrated.exit_code)
            sys.exit(NotMigrated.exit_code)
