"""Exceptions of rhesis-pipeline.

Every error a user or operator can cause carries a one-line message that names the
problem and the fix. The CLI prints ``error: <message>`` and exits with ``exit_code``
instead of a traceback.
"""

from __future__ import annotations

from dramatiq.errors import ConnectionError as DramatiqConnectionError


class RhesisError(Exception):
    """Base class. ``str(exc)`` is a complete, one-line message for the user."""

    exit_code = 1


class ConfigurationError(RhesisError):
    """A setting (environment variable or option) is invalid."""

    exit_code = 2


class DatabaseUnavailable(RhesisError, DramatiqConnectionError):
    """The database cannot be reached or refused the connection.

    Subclasses dramatiq's ConnectionError so a worker treats it as a broker outage.
    """

    exit_code = 3


class NotMigrated(RhesisError):
    """The database lacks the schema this version needs."""

    exit_code = 4


class EmbeddedServerError(RhesisError):
    """The embedded Postgres could not be started."""

    exit_code = 3


class MessageTooLarge(RhesisError, ValueError):
    """An encoded message is larger than RHESIS_MAX_MESSAGE_BYTES."""

    exit_code = 2


class PermissionDenied(RhesisError):
    """The database refused this session's role an operation (SQLSTATE 42501): a missing
    grant, or a row-level security policy (a tenant writing another organization's row)."""

    exit_code = 1


class InvalidSubmission(RhesisError, ValueError):
    """A run cannot be submitted as given; the message names the field and the fix."""

    exit_code = 2


class RunNotFound(RhesisError, LookupError):
    """No test run has that id — or it belongs to another organization than the one the
    caller reads as (row-level security: for a tenant, another organization's run does
    not exist). Bad input, like a malformed id: exit code 2 in both CLIs, so that a script
    (or ``diff``'s CI gate, whose 1 means "regressions") never takes a typo for a result."""

    exit_code = 2


class NothingToRerun(RhesisError):
    """A re-run was asked of a run none of whose tests qualifies (no failed, errored or
    lost test, and not every test was asked for)."""

    exit_code = 1
