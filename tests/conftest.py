"""Test harness: a real Postgres for every test, real worker processes when asked.

Server, chosen once per session:
  1. ``RHESIS_TEST_DATABASE_URL`` if set (any database on the server; tests create
     their own databases next to it, so the role needs CREATEDB);
  2. else the local server on 127.0.0.1:5432 (user postgres) if it answers;
  3. else an embedded pgserver in a temporary directory, deleted afterwards.
``RHESIS_TEST_SERVER=embedded`` forces the third choice (to prove the fallback works).

Databases: one template is migrated once per session; each test that asks for
``database_url`` gets ``CREATE DATABASE … TEMPLATE`` (fast: a file copy), dropped after.

Faults (tests/support/faults.py): ``owned_server`` is a private server a test may stop;
``owned_database_url`` a migrated database on it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from rhesis_pipeline.settings import Settings, libpq_url, normalise_database_url
from rhesis_pipeline.storage import db, engine

from .support.workers import WorkerPool

REPO = Path(__file__).resolve().parent.parent

#: A table the test actors (tests/support/actors.py) write to; made in the template.
TEST_TABLES = """
CREATE TABLE public.test_records (
    key text PRIMARY KEY,
    payload jsonb NOT NULL DEFAULT '{}',
    pid integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)
"""


def _local_server_answers() -> bool:
    try:
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def _url_for(admin: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin).set(database=name).render_as_string(hide_password=False)


class Server:
    """The Postgres server the session uses, and database management on it."""

    def __init__(self, admin_url: str, kind: str) -> None:
        self.admin_url = admin_url
        self.kind = kind

    def url(self, name: str) -> str:
        """URL of database *name* on this server (whether or not it exists)."""
        return _url_for(self.admin_url, name)

    def _admin(self):
        conn = psycopg2.connect(libpq_url(self.admin_url), application_name="rhesis-tests")
        conn.autocommit = True
        return conn

    def create(self, name: str, template: str | None = None) -> str:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                cur.execute(stmt)
        finally:
            conn.close()
        return _url_for(self.admin_url, name)

    def drop(self, name: str) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        finally:
            conn.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Server:
    forced = os.environ.get("RHESIS_TEST_SERVER", "").strip().lower()
    explicit = os.environ.get("RHESIS_TEST_DATABASE_URL", "").strip()
    if explicit and forced != "embedded":
        return Server(normalise_database_url(explicit), "RHESIS_TEST_DATABASE_URL")
    if forced != "embedded" and _local_server_answers():
        return Server("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", "local")
    from rhesis_pipeline.storage import embedded

    data_dir = tmp_path_factory.mktemp("embedded-pg")
    return Server(embedded.admin_url(data_dir), "embedded")


@pytest.fixture(scope="session")
def template_db(pg_server: Server):
    """A migrated database (plus the test tables), the template of every test database."""
    from rhesis_pipeline.storage import migrate

    name = f"rhesis_tpl_{uuid.uuid4().hex[:10]}"
    url = pg_server.create(name)
    try:
        _use(url)
        migrate.upgrade()
        with db.begin() as conn:
            conn.exec_driver_sql(TEST_TABLES)
        engine.dispose()
        yield name
    finally:
        engine.dispose()
        pg_server.drop(name)


def _use(url: str) -> None:
    engine.configure(settings_=Settings.from_env({"DATABASE_URL": url}), url=url)


@pytest.fixture
def database_url(pg_server: Server, template_db: str):
    """URL of a fresh, migrated database for this test; the process's db module uses it."""
    name = f"rhesis_t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create(name, template=template_db)
    _use(url)
    try:
        yield url
    finally:
        engine.dispose()
        pg_server.drop(name)


@pytest.fixture
def empty_database_url(pg_server: Server):
    """URL of a fresh database with nothing in it (migration tests)."""
    name = f"rhesis_e_{uuid.uuid4().hex[:12]}"
    url = pg_server.create(name)
    _use(url)
    try:
        yield url
    finally:
        engine.dispose()
        pg_server.drop(name)


@pytest.fixture
def workers(database_url: str, tmp_path: Path):
    """Start real ``dramatiq`` worker processes on this test's database; always stopped.

    ``workers.start(processes=1, threads=2)`` returns a started WorkerProcess whose
    logs are in ``tmp_path``.
    """
    pool = WorkerPool(database_url=database_url, log_dir=tmp_path, cwd=REPO)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def owned_server():
    """A started private Postgres (tests/support/faults.py) that this test may stop and
    start; always stopped and deleted afterwards."""
    from .support.faults import OwnedServer

    server = OwnedServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def owned_database_url(owned_server):
    """URL of a migrated database (plus the test tables) on ``owned_server``; the
    process's db module uses it. Start workers on it with ``WorkerPool(database_url=…)``."""
    from rhesis_pipeline.storage import migrate

    url = owned_server.create_database(f"rhesis_o_{uuid.uuid4().hex[:12]}")
    _use(url)
    try:
        migrate.upgrade()
        with db.begin() as conn:
            conn.exec_driver_sql(TEST_TABLES)
        yield url
    finally:
        engine.dispose()


@pytest.fixture
def web_user(pg_server, database_url):
    """URL of this test's database as a fresh LOGIN role (not a superuser) granted
    rhesis_tenant, as a web backend's database user is; dropped afterwards."""
    from .support.tenants import web_user as make

    yield from make(pg_server, database_url)


# -- stages: the fast tests first, the slow ones only when those pass ----------------------

_FAST_FAILURES = pytest.StashKey[int]()


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--all-stages",
        action="store_true",
        help="run the slow tests even when a fast test failed (by default the run stops "
        "before the slow stage)",
    )


def _is_slow(item) -> bool:
    return item.get_closest_marker("slow") is not None


#: Fixtures that start processes or servers: a test that uses one is slow by definition.
SLOW_FIXTURES = frozenset({"workers", "owned_server", "browser"})


def pytest_collection_modifyitems(config, items) -> None:
    """Fast tests first, then the slow ones (each in file order: the sort is stable).
    A test that starts worker processes, a server or a browser must say it is slow."""
    unmarked = [
        item.nodeid
        for item in items
        if not _is_slow(item) and SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests start processes (fixtures "
            + ", ".join(sorted(SLOW_FIXTURES))
            + ") but are not marked @pytest.mark.slow: "
            + ", ".join(unmarked)
        )
    items.sort(key=_is_slow)
    config.stash[_FAST_FAILURES] = 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and not _is_slow(item):
        item.config.stash[_FAST_FAILURES] = item.config.stash.get(_FAST_FAILURES, 0) + 1
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    result = yield
    at_stage_end = nextitem is not None and not _is_slow(item) and _is_slow(nextitem)
    failures = item.config.stash.get(_FAST_FAILURES, 0)
    if at_stage_end and failures and not item.config.getoption("--all-stages"):
        item.session.shouldstop = (
            f"{failures} fast test(s) failed: the slow tests were not run "
            "(fix the fast ones first, or pass --all-stages)"
        )
    return result
