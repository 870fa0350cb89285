"""The embedded Postgres used when ``DATABASE_URL`` is unset.

pgserver ships PostgreSQL 16 binaries in its wheel and starts a private server that
listens on a Unix socket only (no TCP port to collide with). The data lives in
``$RHESIS_DATA_DIR/pgdata``.

Sharing: every process that uses the same data directory shares one server. pgserver
keeps a list of the processes holding the server in ``pgdata/.handle_pids.json``, under
an inter-process file lock; the first starts the server, the last one to exit stops it.
A process killed with SIGKILL stays in that list, so the server then keeps running until
the machine restarts or an operator runs ``pg_ctl stop``; the next process reuses it.

Running as root, pgserver runs Postgres as a system user ``pgserver`` (created with
``useradd`` if missing) and makes the data directory's parents traversable for it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rhesis_pipeline.errors import EmbeddedServerError

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

#: Name of the application database created inside the embedded server.
DATABASE_NAME = "rhesis"

#: The servers this process holds, by data directory.
_servers: dict[Path, PostgresServer] = {}


def pgdata_dir(data_dir: Path) -> Path:
    """The embedded server's data directory inside *data_dir* (``RHESIS_DATA_DIR``)."""
    return Path(data_dir).expanduser().resolve() / "pgdata"


def _get_server(pgdata: Path) -> PostgresServer:
    """The server of *pgdata*, started (or joined, if another process runs it) on first use."""
    if pgdata in _servers:
        return _servers[pgdata]
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare CalledProcessError/AssertionError
        log = pgdata / "log"
        hint = f"; see {log}" if log.exists() else ""
        raise EmbeddedServerError(
            f"could not start the embedded Postgres in {pgdata}: {exc}{hint}. "
            "Set DATABASE_URL to use an existing server instead"
        ) from exc
    _servers[pgdata] = server
    return server


def release() -> None:
    """Give up this process's hold on the embedded server; the last holder stops it.

    pgserver does this at exit through atexit, which a multiprocessing child (a dramatiq
    worker process) never runs: the broker's ``close()`` calls this instead.
    """
    while _servers:
        _pgdata, server = _servers.popitem()
        try:
            server._cleanup()
        except Exception:
            logger.warning("could not release the embedded server", exc_info=True)


def admin_url(data_dir: Path) -> str:
    """URL of the embedded server's ``postgres`` database, starting the server if needed."""
    server = _get_server(pgdata_dir(data_dir))
    return _to_sqlalchemy(server.get_uri("postgres"))


def database_url(data_dir: Path) -> str:
    """URL of the embedded application database, creating the server and database if needed."""
    server = _get_server(pgdata_dir(data_dir))
    ensure_database(_to_sqlalchemy(server.get_uri("postgres")), DATABASE_NAME)
    return _to_sqlalchemy(server.get_uri(DATABASE_NAME))


def ensure_database(admin: str, name: str) -> None:
    """Create database *name* on the server of *admin* unless it exists (race-safe)."""
    import psycopg2
    from psycopg2 import errors, sql

    from rhesis_pipeline.settings import libpq_url
    from rhesis_pipeline.storage.queries import Q, pyformat

    conn = psycopg2.connect(libpq_url(admin), application_name="rhesis-pipeline")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(pyformat("database_exists"), {"name": name})
            if cur.fetchone():
                return
            try:
                cur.execute(sql.SQL(Q["create_database"].text).format(name=sql.Identifier(name)))
                logger.info("created database %s", name)
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                pass  # another process created it between our check and our CREATE
    finally:
        conn.close()


def _to_sqlalchemy(uri: str) -> str:
    # pgserver gives postgresql://postgres:@/db?host=/socket/dir
    return "postgresql+psycopg2://" + uri.split("://", 1)[1].replace("postgres:@", "postgres@", 1)
