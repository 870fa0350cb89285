"""Every setting of rhesis-pipeline, read from the environment in one place.

``DATABASE_URL`` names the Postgres database that holds both the queue (dramatiq-pg's
``dramatiq`` schema) and the pipeline's own tables (the ``rhesis`` schema). It accepts
``postgres://``, ``postgresql://`` and ``postgresql+psycopg2://`` and is normalised to
``postgresql+psycopg2://``: SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3,
which this project does not ship. When it is unset, an embedded Postgres is used
(see :mod:`rhesis_pipeline.storage.embedded`).

All other settings are ``RHESIS_*`` variables, one per field of :class:`Settings`. Each
field's docstring gives its variable, the unit of its value and what it does: the
settings reference of the docs is generated from them, so a new setting is documented
where it is declared. Seconds and hours must be finite numbers of
at most 1,000,000 (``nan``, ``inf`` and ``1e308`` are refused with one line, as every
invalid setting is).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rhesis_pipeline.errors import ConfigurationError

#: Schemes accepted in DATABASE_URL, all normalised to the psycopg2 driver.
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
NORMALISED_SCHEME = "postgresql+psycopg2"

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("text", "json")
_TRACE_PARENTS = ("link", "child", "none")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")


def normalise_database_url(url: str) -> str:
    """Return *url* with its scheme rewritten to ``postgresql+psycopg2://``.

    Raises :class:`ConfigurationError` naming the problem for anything that is not a
    Postgres URL this project can use.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = url.strip()
    if not raw:
        raise ConfigurationError(
            "DATABASE_URL is set but empty; unset it to use the embedded database"
        )
    scheme, sep, _rest = raw.partition("://")
    if not sep:
        raise ConfigurationError(
            f"DATABASE_URL {_redact(raw)!r} is not a URL; expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    if scheme.lower() not in ACCEPTED_SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL has scheme {scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in ACCEPTED_SCHEMES)
        )
    candidate = NORMALISED_SCHEME + "://" + raw.split("://", 1)[1]
    try:
        parsed = make_url(candidate)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"DATABASE_URL {_redact(raw)!r} cannot be parsed: {exc}") from None
    if not parsed.database:
        raise ConfigurationError(
            f"DATABASE_URL {redact_url(candidate)!r} names no database; add /DBNAME at the end"
        )
    return candidate


def redact_url(url: str) -> str:
    """*url* with its password replaced by ``***``, for logs and messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL we could not parse: hide everything between : and @
        return _redact(url)


def libpq_url(url: str) -> str:
    """The normalised SQLAlchemy *url* as a plain libpq URI for psycopg2.connect."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _redact(raw: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", raw)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def _float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0,
    maximum: float = 1_000_000,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name}={raw!r} is not a finite number; give {minimum:g} or more")
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    if value > maximum:
        raise ConfigurationError(f"{name}={raw} is out of range; give at most {maximum:.15g}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigurationError(f"{name}={raw!r} must be on or off")


def _default_run_dir() -> Path:
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"rhesis-pipeline-{uid}"


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("rhesis-pipeline", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build one with :meth:`from_env`; every field has a default.

    Each field's docstring starts with the variable that sets it and the unit of its value
    (``VARIABLE, unit: what it does``) and, when the default depends on the machine, ends
    with ``Default: …``. The docs' settings reference is generated from them
    (``docs/hooks/reference.py``) and a test holds every field to that form.
    """

    database_url: str | None = None
    """DATABASE_URL, URL: the Postgres database of the queue and the pipeline's tables:
    `postgres://`, `postgresql://` or `postgresql+psycopg2://`, normalised to
    `postgresql+psycopg2://` (SQLAlchemy 2.1 maps a plain `postgresql://` to psycopg 3,
    which is not installed). Default: unset, the embedded server."""
    data_dir: Path = field(default_factory=_default_data_dir)
    """RHESIS_DATA_DIR, directory: where the embedded server keeps its data
    (`$RHESIS_DATA_DIR/pgdata`). Default: the per-user data directory
    (`~/.local/share/rhesis-pipeline`)."""
    log_level: str = "INFO"
    """RHESIS_LOG_LEVEL, level: DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "text"
    """RHESIS_LOG_FORMAT, format: `text`, or `json`: every log line of the workers, the
    scheduler and the CLIs is one JSON object (time, level, logger, message and, where
    known, message id, actor, run id, test id, organization, worker id)."""
    worker_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    """RHESIS_WORKER_PROCESSES, processes: worker processes started by `bin/worker`
    (`rhesis-pipeline worker`); at least 1. Default: the number of CPUs."""
    worker_threads: int = 8
    """RHESIS_WORKER_THREADS, threads: threads per worker process; at least 1."""
    queues: tuple[str, ...] = ()
    """RHESIS_QUEUES, queue names: space- or comma-separated queues `bin/worker` consumes.
    Default: empty, every queue the actors declare."""
    db_pool_size: int = 0
    """RHESIS_DB_POOL_SIZE, connections: database connections per process. 0: sized
    automatically (workers: their queues' consumers + threads + 4, each queue and its
    delay queue having a consumer that holds one connection; other processes: 5). The
    dashboard serves at most this many database requests at once; the others wait."""
    db_pool_timeout: float = 30.0
    """RHESIS_DB_POOL_TIMEOUT, seconds: how long to wait for a free pooled connection
    before failing with a clear error; at least 0.1."""
    max_message_bytes: int = 1024 * 1024
    """RHESIS_MAX_MESSAGE_BYTES, bytes: the largest encoded message `send()` accepts
    (1 MiB; at least 1024). A larger one is refused with an error naming the actor: store
    big data in a table and pass its id."""
    queue_retention_hours: float = 168.0
    """RHESIS_QUEUE_RETENTION_HOURS, hours: how long done and rejected queue rows
    (completion callbacks, other actors' messages, rejected members) are kept before the
    sweep purges them (7 days). A test's own message never waits for it: it is deleted in
    the transaction that stores the test's outcome (the result row is its record)."""
    run_retention_hours: float = 0.0
    """RHESIS_RUN_RETENTION_HOURS, hours: how long finished runs (and their results) are
    kept before the sweep deletes them, results first, in batches; the Prometheus counters
    keep counting them. 0: kept forever, so `test_runs` and `test_results` grow."""
    run_hooks: tuple[str, ...] = ()
    """RHESIS_RUN_HOOKS, hooks: comma- or space-separated `module:function` callables called
    with the finished `Run` when a run finishes, besides those registered with
    `@on_run_finished`. Default: none."""
    sweep_cron: str = "* * * * *"
    """RHESIS_SWEEP_CRON, cron (UTC): when the scheduler runs the sweeper (rescue, expiry,
    retention). Sunday must be written 7: periodiq never fires `0`, `sun` or `@weekly`,
    so those are refused."""
    heartbeat_interval_s: float = 5.0
    """RHESIS_HEARTBEAT_INTERVAL_S, seconds: between a worker's heartbeats, rescues and
    revocation checks; at least 0.1. A worker whose liveness lock is gone (its process
    died, or its connection did) counts as dead once its heartbeat is three intervals old
    (the lock grace): its time to reconnect after a database restart."""
    heartbeat_timeout_s: float = 30.0
    """RHESIS_HEARTBEAT_TIMEOUT_S, seconds: without a heartbeat for this long, a worker
    whose lock is still held is dead anyway (hung, cut off). Greater than the interval."""
    member_grace_s: float = 30.0
    """RHESIS_MEMBER_GRACE_S, seconds: past its time limit by this much, an orphaned test
    is stored as an error (timed out) rather than run again."""
    run_max_age_hours: float = 24.0
    """RHESIS_RUN_MAX_AGE_HOURS, hours: age after which the sweep stores a run's
    unfinished tests as `lost` (the run ends PARTIAL or FAILED, with its callback)."""
    worker_retention_hours: float = 24.0
    """RHESIS_WORKER_RETENTION_HOURS, hours: how long dead workers' rows are kept."""
    run_dir: Path = field(default_factory=_default_run_dir)
    """RHESIS_RUN_DIR, directory: where each worker process's heartbeat thread writes its
    liveness file, read by `rhesis-pipeline probe worker` without the database. Default:
    `rhesis-pipeline-<uid>` in the system's temporary directory."""
    tenant_max_running: int = 0
    """RHESIS_TENANT_MAX_RUNNING, tests: the most tests one organization may have claimed
    at once (executing, or held by a worker about to execute them), so that a tenant with
    a slow endpoint cannot take every worker thread. 0: unlimited."""
    fair_claims: bool = True
    """RHESIS_FAIR_CLAIMS, on/off: `on`, members of different organizations are claimed
    round-robin by organization; `off`, oldest first across all organizations."""
    inflight_per_process: int = 500
    """RHESIS_INFLIGHT_PER_PROCESS, tests: the most I/O-bound tests (HTTP, `async def`
    targets) one worker process holds in flight on its event loop, besides its threads.
    0: they run on threads."""
    endpoint_default_concurrency: int = 64
    """RHESIS_ENDPOINT_DEFAULT_CONCURRENCY, tests in flight: the ceiling for an endpoint
    whose suite declares no `max_concurrency`, across all workers (adaptive: it starts at
    8 and grows until 429s)."""
    rate_limited_max_s: float = 900.0
    """RHESIS_RATE_LIMITED_MAX_S, seconds: how long a test may spend rate limited (429s)
    in all before it ends as `error` ("rate limited by KEY for N s"); at least 1."""
    trace_parent: str = "link"
    """RHESIS_TRACE_PARENT, mode: how a run's trace relates to the span current where it is
    launched (the web request), when tracing is on (OpenTelemetry, the `otel` extra):
    `link` (its root span links to that span: one trace per run), `child` (the run is
    inside the request's trace: for small runs), or `none` (no relation)."""
    dashboard_token: str | None = field(default=None, repr=False)
    """RHESIS_DASHBOARD_TOKEN, secret: when set, every page of `rhesis-monitor dashboard`
    needs it: `Authorization: Bearer <token>`, or the login form (whose cookie holds an
    HMAC of the token, never the token). Default: unset, the dashboard is open."""

    @property
    def lock_grace_s(self) -> float:
        """Seconds a worker that lost its liveness lock (its connection) has to reconnect
        and take it again before it counts as dead: three heartbeat intervals. A worker
        reconnects within about one interval of the database answering again."""
        return 3 * self.heartbeat_interval_s

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is set and the embedded server is used."""
        return self.database_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings from *env* (default: ``os.environ``)."""
        env = os.environ if env is None else env
        raw_url = env.get("DATABASE_URL")
        database_url = normalise_database_url(raw_url) if raw_url is not None else None

        level = env.get("RHESIS_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in _LOG_LEVELS:
            raise ConfigurationError(
                f"RHESIS_LOG_LEVEL={level!r} is not one of {', '.join(_LOG_LEVELS)}"
            )
        log_format = env.get("RHESIS_LOG_FORMAT", "text").strip().lower() or "text"
        if log_format not in _LOG_FORMATS:
            raise ConfigurationError(
                f"RHESIS_LOG_FORMAT={log_format!r} is not one of {', '.join(_LOG_FORMATS)}"
            )

        trace_parent = env.get("RHESIS_TRACE_PARENT", "link").strip().lower() or "link"
        if trace_parent not in _TRACE_PARENTS:
            raise ConfigurationError(
                f"RHESIS_TRACE_PARENT={trace_parent!r} is not one of {', '.join(_TRACE_PARENTS)}"
            )

        queues = tuple(q for q in re.split(r"[\s,]+", env.get("RHESIS_QUEUES", "")) if q)
        for q in queues:
            if not _QUEUE_NAME.match(q):
                raise ConfigurationError(
                    f"RHESIS_QUEUES names {q!r}, which is not a valid queue name "
                    "(letters, digits, '.', '_' and '-'; not starting with a digit)"
                )

        data_dir_raw = env.get("RHESIS_DATA_DIR", "").strip()
        data_dir = Path(data_dir_raw).expanduser() if data_dir_raw else _default_data_dir()
        run_dir_raw = env.get("RHESIS_RUN_DIR", "").strip()
        run_dir = Path(run_dir_raw).expanduser() if run_dir_raw else _default_run_dir()

        hooks = tuple(h for h in re.split(r"[\s,]+", env.get("RHESIS_RUN_HOOKS", "")) if h)
        for hook in hooks:
            if not _TARGET.match(hook):
                raise ConfigurationError(
                    f"RHESIS_RUN_HOOKS names {hook!r}; write module.path:function"
                )

        sweep_cron = env.get("RHESIS_SWEEP_CRON", "").strip() or cls.sweep_cron
        _check_cron("RHESIS_SWEEP_CRON", sweep_cron)
        interval = _float(env, "RHESIS_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1)
        timeout = _float(env, "RHESIS_HEARTBEAT_TIMEOUT_S", 30.0, minimum=0.1)
        if timeout <= interval:
            raise ConfigurationError(
                f"RHESIS_HEARTBEAT_TIMEOUT_S={timeout:g} must be greater than "
                f"RHESIS_HEARTBEAT_INTERVAL_S={interval:g}"
            )

        return cls(
            run_hooks=hooks,
            sweep_cron=sweep_cron,
            heartbeat_interval_s=interval,
            heartbeat_timeout_s=timeout,
            member_grace_s=_float(env, "RHESIS_MEMBER_GRACE_S", 30.0),
            run_max_age_hours=_float(env, "RHESIS_RUN_MAX_AGE_HOURS", 24.0, minimum=0.001),
            worker_retention_hours=_float(env, "RHESIS_WORKER_RETENTION_HOURS", 24.0),
            run_dir=run_dir,
            database_url=database_url,
            data_dir=data_dir,
            log_level=level,
            log_format=log_format,
            trace_parent=trace_parent,
            worker_processes=_int(env, "RHESIS_WORKER_PROCESSES", os.cpu_count() or 1, minimum=1),
            worker_threads=_int(env, "RHESIS_WORKER_THREADS", 8, minimum=1),
            queues=queues,
            db_pool_size=_int(env, "RHESIS_DB_POOL_SIZE", 0),
            db_pool_timeout=_float(env, "RHESIS_DB_POOL_TIMEOUT", 30.0, minimum=0.1),
            max_message_bytes=_int(env, "RHESIS_MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1024),
            queue_retention_hours=_float(env, "RHESIS_QUEUE_RETENTION_HOURS", 168.0),
            run_retention_hours=_float(env, "RHESIS_RUN_RETENTION_HOURS", 0.0),
            tenant_max_running=_int(env, "RHESIS_TENANT_MAX_RUNNING", 0),
            fair_claims=_switch(env, "RHESIS_FAIR_CLAIMS", True),
            inflight_per_process=_int(env, "RHESIS_INFLIGHT_PER_PROCESS", 500),
            endpoint_default_concurrency=_int(
                env, "RHESIS_ENDPOINT_DEFAULT_CONCURRENCY", 64, minimum=1
            ),
            rate_limited_max_s=_float(env, "RHESIS_RATE_LIMITED_MAX_S", 900.0, minimum=1.0),
            dashboard_token=env.get("RHESIS_DASHBOARD_TOKEN") or None,
        )


def _check_cron(name: str, spec: str) -> None:
    """Refuse cron specs periodiq would parse but mis-schedule (Sunday as 0 never fires)."""
    from periodiq import CronSpec

    fields = spec.split()
    if spec.startswith("@"):
        if spec in ("@weekly",):
            raise ConfigurationError(
                f"{name}={spec!r}: periodiq never fires @weekly (Sunday is 0); write '0 0 * * 7'"
            )
    elif len(fields) == 5 and re.search(r"(^|[,-])(0|sun)($|[,-/])", fields[4].lower()):
        raise ConfigurationError(
            f"{name}={spec!r}: periodiq never fires on Sunday written as 0 or 'sun'; write 7"
        )
    try:
        CronSpec.parse(spec)
    except Exception as exc:
        raise ConfigurationError(f"{name}={spec!r} is not a valid cron spec: {exc}") from None
