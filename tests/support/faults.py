"""Fault injection for chaos tests: cut connections, freeze a process, stop the server.

* ``cut_connections(url)`` ends every backend of one database, as a failover or an
  operator's ``pg_terminate_backend`` would; clients see their next query fail.
* ``frozen(pid)`` stops a process (SIGSTOP) for the duration of a ``with`` block, like a
  VM pause or a stop-the-world GC: it holds its connections and locks but does nothing.
* ``OwnedServer`` is a private Postgres that one test may stop and start; the session's
  shared server (tests/conftest.py) must never go away under other tests.

OwnedServer uses the Postgres 16 binaries bundled in the ``pgserver`` wheel, so it needs
no system Postgres. Postgres refuses to run as root: as root, initdb and pg_ctl run as the
system user ``pgserver`` (created with ``useradd`` if missing), exactly as pgserver itself
does (see rhesis_pipeline/storage/embedded.py), and the data directory belongs to that user.
The server listens on TCP 127.0.0.1 only (no Unix socket, so no socket-directory
permissions to arrange) on a port chosen once, kept across restarts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg2
from psycopg2 import sql

from rhesis_pipeline.settings import libpq_url

#: Ends every other backend on database %(database)s; waits up to %(timeout_ms)s ms for
#: each to be gone (Postgres 14+) and counts those that are.
TERMINATE_BACKENDS = """
SELECT count(*) FILTER (WHERE ended)
FROM (
    SELECT pg_terminate_backend(pid, %(timeout_ms)s) AS ended
    FROM pg_stat_activity
    WHERE datname = %(database)s AND pid <> pg_backend_pid()
) AS terminated
"""

#: How long cut_connections waits for each backend to exit, in milliseconds.
TERMINATE_TIMEOUT_MS = 5000

#: The system user Postgres runs as when the tests run as root (pgserver's choice).
SYSTEM_USER = "pgserver"

#: Settings of an OwnedServer: TCP on 127.0.0.1 only, no fsync (a test server's data
#: only has to survive a clean restart or a process crash, not a power cut).
SERVER_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
fsync = off
full_page_writes = off
"""


# -- cut connections ---------------------------------------------------------------------


def cut_connections(database_url: str) -> int:
    """End every backend connected to *database_url*'s database; return how many ended.

    Runs from a short-lived admin connection to database ``postgres`` on the same server
    (same credentials), which is not itself ended. Returns once the backends are gone (or
    after TERMINATE_TIMEOUT_MS each), so a client's next query fails deterministically.
    """
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    conn = psycopg2.connect(libpq_url(admin), application_name="rhesis-faults")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                TERMINATE_BACKENDS,
                {"database": url.database, "timeout_ms": TERMINATE_TIMEOUT_MS},
            )
            (ended,) = cur.fetchone()
    finally:
        conn.close()
    return int(ended)


# -- freeze a process --------------------------------------------------------------------


class HasPid(Protocol):
    @property
    def pid(self) -> int: ...


def process_state(pid: int) -> str | None:
    """The one-letter state in /proc/<pid>/stat (R, S, T, Z, ...); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, stopped: bool, timeout: float = 5.0) -> None:
    if not sys.platform.startswith("linux"):
        return  # no /proc: signals are delivered before kill() returns for most cases
    deadline = time.monotonic() + timeout
    while True:
        state = process_state(pid)
        if state is None or (state == "T") == stopped:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still in state {state} after {timeout}s")
        time.sleep(0.01)


@contextlib.contextmanager
def frozen(pid: int | HasPid, *, process_group: bool = False) -> Iterator[int]:
    """Stop process *pid* (SIGSTOP) inside the block and continue it (SIGCONT) after.

    *pid* may be an int or anything with a ``pid`` (a WorkerProcess, a Popen). With
    *process_group*, the whole group led by *pid* is frozen: a ``dramatiq`` command and its
    worker processes (WorkerPool starts each in its own session). On entry, waits until
    *pid* shows as stopped (Linux); SIGCONT is always sent, also when the block raises.
    Yields the pid.
    """
    target = pid if isinstance(pid, int) else pid.pid
    send = os.killpg if process_group else os.kill
    send(target, signal.SIGSTOP)
    try:
        _wait_state(target, stopped=True)
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            send(target, signal.SIGCONT)
            _wait_state(target, stopped=False)


# -- a server the test owns --------------------------------------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pgserver_bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        # pgserver re-exports only the command wrappers; the path lives in _commands.
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class OwnedServer:
    """A private Postgres 16 that the test may stop and start; see the module docstring.

    ``OwnedServer()`` runs initdb in a new temporary directory (or in *base_dir*, which
    must be empty or absent) and picks a free port; ``start()`` starts it. ``close()``
    always stops the server and deletes the directory; it is also the context manager's
    exit. Superuser ``postgres``, trust authentication.
    """

    def __init__(self, base_dir: Path | None = None, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = _free_port(host)
        self.bin_dir = _pgserver_bin()
        self._uid: int | None = None
        self._gid: int | None = None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="rhesis-owned-pg-")).resolve()
        self.pgdata = self.base_dir / "pgdata"
        self.log_path = self.base_dir / "postgres.log"
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            if os.name == "posix" and os.geteuid() == 0:
                self._prepare_for_root()
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
            with open(self.pgdata / "postgresql.conf", "a") as conf:
                conf.write(SERVER_SETTINGS.format(port=self.port))
        except BaseException:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            raise

    def _prepare_for_root(self) -> None:
        """Run Postgres as SYSTEM_USER: pgserver's own helpers create the user and let it
        read the binaries and traverse to the data directory."""
        import pwd
        import stat

        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(self.bin_dir)
        ensure_folder_permissions(self.bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin_dir.parent / "lib", readable)
        ensure_prefix_permissions(self.base_dir)
        os.chown(self.base_dir, self._uid, self._gid)

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a bundled Postgres program as the server's user; output in the result."""
        as_user: dict[str, Any] = {}
        if self._uid is not None:
            as_user = {"user": self._uid, "group": self._gid, "extra_groups": []}
        # Output to a file, not a pipe: the postmaster that pg_ctl starts would inherit a
        # pipe and keep it open (pgserver notes the same hang).
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                [str(self.bin_dir / exe), *args],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
                **as_user,
            )
            out.seek(0)
            proc.stdout = out.read().decode(errors="replace")
        if check and proc.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(
                f"{exe} {' '.join(args)} exited with {proc.returncode}:\n{proc.stdout}\n"
                f"--- {self.log_path} ---\n{log}"
            )
        return proc

    # -- lifecycle --

    def start(self, timeout: float = 30.0) -> None:
        """Start the server on its port and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(timeout)),
        )

    def stop(self, *, immediate: bool = False, timeout: float = 30.0) -> None:
        """Stop the server: "fast" (roll back sessions, checkpoint) or "immediate" (no
        checkpoint; the next start runs crash recovery). Waits until it is gone."""
        mode = "immediate" if immediate else "fast"
        self._run(
            "pg_ctl", "stop", "-D", str(self.pgdata), "-m", mode, "-w", "-t", str(int(timeout))
        )

    @property
    def running(self) -> bool:
        """Whether the postmaster runs (``pg_ctl status``)."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (for ``frozen``), else None."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first) if self.running else None

    def close(self) -> None:
        """Stop the server (immediately: its data is about to go) and delete the directory."""
        try:
            pid = self.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # in case a test left it frozen
                try:
                    self.stop(immediate=True, timeout=10)
                except RuntimeError:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> OwnedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- databases --

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of database ``postgres`` as superuser ``postgres``."""
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database *dbname* (whether or not it exists)."""
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """``CREATE DATABASE name [TEMPLATE template]``; returns the new database's URL."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn = psycopg2.connect(libpq_url(self.admin_url), application_name="rhesis-tests")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(stmt)
        finally:
            conn.close()
        return self.url(name)

    def __repr__(self) -> str:
        return f"<OwnedServer {self.host}:{self.port} {self.pgdata}>"
