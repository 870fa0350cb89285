"""Tenants (issue 12, done-when 1 and 2): isolation enforced by Postgres, not by filters.

The web backend's database user is a real LOGIN role created by each test (``app_…``, not
a superuser, granted ``rhesis_tenant``; roles belong to the whole server, hence the random
names, dropped at the end). It connects to the test database with its own credentials and,
as a backend does per request, runs ``SET LOCAL ROLE rhesis_tenant`` and sets
``app.current_organization``. Organizations ``org-a`` and ``org-b`` each have runs with
results and queue messages (members, a callback, a claim); one run has no organization.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg2
import pytest
from psycopg2 import errors as pg_errors
from psycopg2 import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from rhesis_pipeline.errors import InvalidSubmission, RunNotFound
from rhesis_pipeline.monitor import inspect_run, revoke_runs
from rhesis_pipeline.runs.outcomes import Outcome, write_batch
from rhesis_pipeline.runs.read import get_results, get_run, recent_runs
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.settings import Settings, libpq_url
from rhesis_pipeline.storage import db, engine, migrate, tenancy

from .support import cli
from .support.runs import fake_claim, fake_worker, scalar, wait_finished
from .support.tenants import admin, drop_role

A, B = "org-a", "org-b"
EXECUTOR = "tests.support.targets:noop"

#: Every table of the pipeline's schemas, by what a tenant session gets from it. A new
#: table fails test_a_tenant_sees_only_its_organizations_rows until it is classified here.
ROWS_OF_ITS_ORGANIZATION = ("rhesis.test_runs", "rhesis.test_results", "dramatiq.queue")
NO_ROWS = ("rhesis.claims",)  # granted (revocation's statement reads it), policy: nothing
PERMISSION_DENIED = (
    "rhesis.workers",
    "rhesis.rate_limits",
    "rhesis.alembic_version",
    "rhesis.metric_totals",  # system-wide totals: a tenant scrape leaves them out
    "rhesis.endpoint_limits",  # endpoint keys are shared by tenants: workers' business
    "rhesis.endpoint_leases",
)


def _use(url: str) -> None:
    engine.configure(settings_=Settings.from_env({"DATABASE_URL": url}), url=url)


@contextmanager
def tenant_cursor(url: str, organization_id: str | None):
    """A cursor of *url*'s user in a transaction acting as rhesis_tenant for
    *organization_id* (None: app.current_organization never set); rolled back after."""
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL ROLE rhesis_tenant")
            if organization_id is not None:
                cur.execute(
                    "SELECT set_config('app.current_organization', %s, true)", (organization_id,)
                )
            yield cur
        conn.rollback()
    finally:
        conn.close()


@dataclass
class Org:
    runs: list[str] = field(default_factory=list)
    messages: set[str] = field(default_factory=set)  # members and callbacks


@dataclass
class World:
    orgs: dict[str, Org]
    no_org_run: str


def _messages_of(run_ids: list[str]) -> set[str]:
    with db.connect() as conn:
        members = conn.execute(
            text(
                "SELECT message_id::text FROM rhesis.test_results WHERE run_id = ANY(CAST(:r AS uuid[]))"
            ),
            {"r": run_ids},
        ).all()
        callbacks = conn.execute(
            text(
                "SELECT callback_message_id::text FROM rhesis.test_runs "
                "WHERE id = ANY(CAST(:r AS uuid[])) AND callback_message_id IS NOT NULL"
            ),
            {"r": run_ids},
        ).all()
    return {m for (m,) in members} | {c for (c,) in callbacks}


@pytest.fixture
def world(database_url) -> World:
    """As the system role: for each organization a one-test run whose result is stored
    (IN_PROGRESS: its callback message is enqueued, with the run's tenant, but no worker
    runs it) and a QUEUED three-test run with one member claimed by a worker; a run
    without organization and one whose organization is ''; a rate-limit key."""
    orgs = {}
    worker_id, now = str(uuid.uuid4()), datetime.now(timezone.utc)
    with db.begin() as conn:
        fake_worker(conn, worker_id, now)
        conn.execute(
            text(
                "INSERT INTO rhesis.rate_limits VALUES ('barrier:x', 1, now() + interval '1 hour')"
            )
        )
    for org in (A, B):
        done = launch_test_run(
            [{"id": "solo"}],
            executor=EXECUTOR,
            name=f"{org} done",
            organization_id=org,
            user_id="u",
        )
        (recorded,) = write_batch([Outcome(done, "solo", "passed", output={"secret": org})])
        assert recorded.callback_enqueued
        waiting = launch_test_run(
            [{"id": f"t{i}", "prompt": f"{org} prompt {i}"} for i in range(3)],
            executor=EXECUTOR,
            name=f"{org} waiting",
            organization_id=org,
        )
        claimed = scalar(
            "SELECT message_id::text FROM rhesis.test_results WHERE run_id = :r AND test_id = 't0'",
            r=waiting,
        )
        with db.begin() as conn:
            fake_claim(conn, claimed, worker_id, now, started=True)
        orgs[org] = Org(runs=[done, waiting], messages=_messages_of([done, waiting]))
    no_org = launch_test_run([{"id": "x"}], executor=EXECUTOR, name="system run")
    launch_test_run([{"id": "x"}], executor=EXECUTOR, name="empty org", organization_id="")
    assert len(orgs[B].messages) == 5 and not orgs[A].messages & orgs[B].messages
    return World(orgs=orgs, no_org_run=no_org)


def _pipeline_tables() -> set[str]:
    with db.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN ('rhesis', 'dramatiq')"
                )
            ).scalars()
        )


def _select_all(url: str, organization_id: str | None, table: str):
    """Every row of *table* as the tenant: a list of dicts, or the exception raised."""
    with tenant_cursor(url, organization_id) as cur:
        try:
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(*table.split("."))))
        except psycopg2.Error as exc:
            return exc
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# -- done-when 1: reading ----------------------------------------------------------------


def test_a_tenant_sees_only_its_organizations_rows(web_user, world):
    tables = _pipeline_tables()
    assert tables == set(ROWS_OF_ITS_ORGANIZATION + NO_ROWS + PERMISSION_DENIED)
    b = world.orgs[B]

    runs_ = _select_all(web_user, B, "rhesis.test_runs")
    assert {str(r["id"]) for r in runs_} == set(b.runs)
    assert {r["organization_id"] for r in runs_} == {B}

    results = _select_all(web_user, B, "rhesis.test_results")
    assert len(results) == 4 and {str(r["run_id"]) for r in results} == set(b.runs)
    assert [r["output"] for r in results if r["output"]] == [{"secret": B}]

    queue = _select_all(web_user, B, "dramatiq.queue")
    assert {str(m["message_id"]) for m in queue} == b.messages  # 4 members + 1 callback
    assert {m["message"]["options"]["tenant"]["organization_id"] for m in queue} == {B}

    # Claims: granted (revocation's statement must be planned) but the policy shows no
    # row at all, not even the claim on B's own message.
    assert scalar("SELECT count(*) FROM rhesis.claims") == 2
    assert _select_all(web_user, B, "rhesis.claims") == []
    # Maintenance tables: no privilege at all.
    for table in PERMISSION_DENIED:
        assert isinstance(_select_all(web_user, B, table), pg_errors.InsufficientPrivilege), table


@pytest.mark.parametrize("organization_id", [None, ""], ids=["unset", "empty"])
def test_without_an_organization_a_tenant_sees_nothing(web_user, world, organization_id):
    for table in ROWS_OF_ITS_ORGANIZATION + NO_ROWS:
        assert _select_all(web_user, organization_id, table) == [], table
    for table in PERMISSION_DENIED:
        denied = _select_all(web_user, organization_id, table)
        assert isinstance(denied, pg_errors.InsufficientPrivilege), table


def test_the_web_user_without_set_role_is_subject_to_the_policies_too(web_user, world):
    # It inherits rhesis_tenant's privileges, and with them its policies: no organization
    # set, no row.
    conn = psycopg2.connect(libpq_url(web_user))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM rhesis.test_runs")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT set_config('app.current_organization', %s, false)", (B,))
            cur.execute("SELECT count(*) FROM rhesis.test_runs")
            assert cur.fetchone()[0] == 2
    finally:
        conn.close()


# -- done-when 1: writing ------------------------------------------------------------------


def _snapshot(run_ids: list[str]) -> dict:
    with db.connect() as conn:
        return {
            name: conn.execute(text(query), {"r": run_ids}).all()
            for name, query in {
                "runs": "SELECT * FROM rhesis.test_runs WHERE id = ANY(CAST(:r AS uuid[])) ORDER BY id",
                "results": "SELECT * FROM rhesis.test_results WHERE run_id = ANY(CAST(:r AS uuid[])) ORDER BY run_id, position",
                "messages": "SELECT q.* FROM dramatiq.queue q WHERE q.message->'args'->>0 = ANY(:r) ORDER BY message_id",
            }.items()
        }


def test_a_tenant_cannot_change_another_organizations_rows(web_user, world):
    a, b = world.orgs[A], world.orgs[B]
    before = _snapshot(a.runs)
    assert len(before["runs"]) == 2 and len(before["results"]) == 4 and len(before["messages"]) == 5

    def rowcount(statement: str, params: dict) -> int | Exception:
        with tenant_cursor(web_user, B) as cur:
            try:
                cur.execute(statement, params)
            except psycopg2.Error as exc:
                return exc
            return cur.rowcount

    ids, messages = a.runs, sorted(a.messages)
    changes = {
        "UPDATE rhesis.test_runs SET cancel_requested = true, name = 'x' WHERE id = ANY(%(r)s::uuid[])": 0,
        "UPDATE rhesis.test_results SET status = 'cancelled' WHERE run_id = ANY(%(r)s::uuid[])": 0,
        "UPDATE dramatiq.queue SET state = 'done' WHERE message_id = ANY(%(m)s::uuid[])": 0,
        "DELETE FROM dramatiq.queue WHERE message_id = ANY(%(m)s::uuid[])": 0,
        # Nothing a tenant does deletes runs or results (retention is maintenance's):
        # no DELETE privilege on them.
        "DELETE FROM rhesis.test_runs WHERE id = ANY(%(r)s::uuid[])": pg_errors.InsufficientPrivilege,
        "DELETE FROM rhesis.test_results WHERE run_id = ANY(%(r)s::uuid[])": pg_errors.InsufficientPrivilege,
    }
    for statement, expected in changes.items():
        got = rowcount(statement, {"r": ids, "m": messages})
        if isinstance(expected, int):
            assert got == expected, statement
        else:
            assert isinstance(got, expected), (statement, got)

    # Nor move its own rows into A, nor create rows for A (WITH CHECK).
    refusals = [
        ("UPDATE rhesis.test_runs SET organization_id = %(a)s WHERE id = %(b)s::uuid", {}),
        (
            "INSERT INTO rhesis.test_runs (id, organization_id, name, executor, total) "
            "VALUES (gen_random_uuid(), %(a)s, 'x', '{}', 1)",
            {},
        ),
        (
            "UPDATE dramatiq.queue SET message = jsonb_set(message, '{options,tenant,organization_id}', to_jsonb(%(a)s::text)) "
            "WHERE message_id = ANY(%(m)s::uuid[])",
            {"m": sorted(b.messages)},
        ),
        (
            "INSERT INTO dramatiq.queue (message_id, queue_name, state, message) "
            "VALUES (gen_random_uuid(), 'rhesis-tests', 'queued', %(msg)s::jsonb)",
            {"msg": json.dumps({"options": {"tenant": {"organization_id": A}}})},
        ),
    ]
    for statement, extra in refusals:
        got = rowcount(statement, {"a": A, "b": b.runs[1], **extra})
        assert isinstance(got, pg_errors.InsufficientPrivilege), (statement, got)
        assert "row-level security" in str(got)

    # Control: the same kind of change to its own rows does change them.
    assert (
        rowcount(
            "UPDATE rhesis.test_runs SET name = name WHERE id = ANY(%(r)s::uuid[])", {"r": b.runs}
        )
        == 2
    )
    assert _snapshot(a.runs) == before


def _tenant_session(url: str, organization_id: str):
    """A SQLAlchemy Session of the web user whose transaction acts as *organization_id*,
    set up the way a web backend does it per request (raw SQL, no rhesis_pipeline call)."""
    engine = create_engine(url)
    session = Session(engine)
    session.execute(text("SET LOCAL ROLE rhesis_tenant"))
    session.execute(
        text(
            "SELECT set_config('app.current_organization', :o, true), set_config('app.current_user', 'u-1', true)"
        ),
        {"o": organization_id},
    )
    return engine, session


def test_launching_a_run_for_another_organization_is_refused(web_user, world):
    before = scalar("SELECT count(*) FROM rhesis.test_runs")
    engine, session = _tenant_session(web_user, B)
    try:
        with pytest.raises(InvalidSubmission) as refused:
            launch_test_run([{"id": "x"}], executor=EXECUTOR, organization_id=A, session=session)
        session.rollback()
    finally:
        session.close()
        engine.dispose()
    assert str(refused.value) == (
        "organization_id 'org-a' refused: this session acts as rhesis_tenant for "
        "organization 'org-b' and may launch runs only for it"
    )
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == before


def test_a_session_without_organization_may_launch_nothing(web_user, world):
    engine = create_engine(web_user)
    try:
        with Session(engine) as session:
            session.execute(text("SET LOCAL ROLE rhesis_tenant"))
            with pytest.raises(InvalidSubmission, match="no organization"):
                launch_test_run(
                    [{"id": "x"}], executor=EXECUTOR, organization_id=B, session=session
                )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_tenant_launches_in_its_own_transaction_and_a_worker_runs_it(web_user, world, workers):
    workers.start(processes=1, threads=4)
    tests = [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(20)]
    engine, session = _tenant_session(web_user, B)
    try:
        run_id = launch_test_run(
            tests,
            executor=EXECUTOR,
            name="from the web",
            organization_id=B,
            user_id="u-1",
            session=session,
        )
        # Not committed: nobody sees it yet, and no worker runs it.
        assert scalar("SELECT count(*) FROM rhesis.test_runs WHERE id = :r", r=run_id) == 0
        session.commit()
    finally:
        session.close()
        engine.dispose()
    run = wait_finished(run_id, timeout=60)
    assert (run.status, run.passed, run.total, run.organization_id, run.user_id) == (
        "COMPLETED",
        20,
        20,
        B,
        "u-1",
    )
    results = get_results(run_id, organization_id=B)
    assert [r["test_id"] for r in results] == [t["id"] for t in tests]
    assert {r["status"] for r in results} == {"passed"}
    assert get_run(run_id, organization_id=B).status == "COMPLETED"
    with pytest.raises(RunNotFound):
        get_run(run_id, organization_id=A)


# -- the API as a tenant -----------------------------------------------------------------------


def test_get_results_refuses_another_organizations_run_as_get_run_does(world):
    a, b = world.orgs[A], world.orgs[B]
    # Given: each organization's one-test run with its stored output, read as B.
    (own,) = get_results(b.runs[0], organization_id=B)
    assert (own["test_id"], own["output"]) == ("solo", {"secret": B})

    # Then: A's run is not there for B, for get_results exactly as for get_run.
    refusals = []
    for reader in (get_run, get_results):
        with pytest.raises(RunNotFound) as refused:
            reader(a.runs[0], organization_id=B)
        refusals.append(str(refused.value))
    assert refusals == [f"no test run with id {a.runs[0]}"] * 2

    # And: a run that does not exist at all is refused alike, by the system role too,
    # while A still reads its own.
    missing = str(uuid.uuid4())
    for organization_id in (None, B):
        with pytest.raises(RunNotFound, match=f"no test run with id {missing}"):
            get_results(missing, organization_id=organization_id)
    assert [r["output"] for r in get_results(a.runs[0], organization_id=A)] == [{"secret": A}]


def test_the_read_and_revoke_api_as_the_web_user(web_user, world, database_url):
    a, b = world.orgs[A], world.orgs[B]
    _use(web_user)  # the library on the web user's own connection, as a backend uses it
    try:
        # Without a tenant the web user sees nothing (it is subject to the policies).
        with pytest.raises(RunNotFound):
            get_run(b.runs[0])
        assert get_run(b.runs[0], organization_id=B).organization_id == B
        assert get_run(b.runs[0], organization_id=B).done == 1
        with pytest.raises(RunNotFound, match=f"no test run with id {a.runs[0]}"):
            get_run(a.runs[0], organization_id=B)
        with pytest.raises(RunNotFound, match=f"no test run with id {a.runs[0]}"):
            get_results(a.runs[0], organization_id=B)
        assert {r.id for r in recent_runs(organization_id=B)} == set(b.runs)
        with pytest.raises(RunNotFound):
            inspect_run(a.runs[1], organization_id=B)
        found = inspect_run(b.runs[1], organization_id=B, verbose=True)
        assert [t["claimed_by"] for t in found.tests] == [None, None, None]  # no claims seen

        # Revoking: B's own run, then A's (not found, untouched).
        (revoked,) = revoke_runs([b.runs[1]], organization_id=B)
        assert (revoked.action, revoked.cancelled_tests, revoked.callback_enqueued) == (
            "revoked",
            3,
            True,
        )
        (refused,) = revoke_runs([a.runs[1]], organization_id=B)
        assert refused.action == "not_found"
    finally:
        _use(database_url)
    assert get_run(b.runs[1]).cancel_requested
    untouched = get_run(a.runs[1])
    assert (untouched.cancel_requested, untouched.done) == (False, 0)
    assert (
        scalar(
            "SELECT count(*) FROM dramatiq.queue WHERE message->'args'->>0 = :r AND state = 'queued'",
            r=a.runs[1],
        )
        == 2
    )


# -- done-when 2: the CLIs ------------------------------------------------------------------


def test_the_clis_with_org_show_only_that_organization(world, database_url):
    a, b = world.orgs[A], world.orgs[B]
    env = {"DATABASE_URL": database_url}

    shown = cli.run("rhesis-pipeline", "show", a.runs[0], "--org", B, env=env)
    assert shown.returncode == 2, shown.stderr  # an unknown run id is bad input
    assert (
        shown.stderr.strip().splitlines()[-1]
        == f"rhesis-pipeline: error: no test run with id {a.runs[0]}"
    )
    assert shown.stdout == "" and "Traceback" not in shown.stderr

    own = cli.run("rhesis-pipeline", "show", b.runs[0], "--org", B, "--json", env=env)
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["run_id"] == b.runs[0]

    listed = cli.run("rhesis-pipeline", "runs", "--org", B, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == set(b.runs)
    table = cli.run("rhesis-pipeline", "runs", "--org", B, env=env).stdout
    assert all(r in table for r in b.runs) and not any(
        r in table for r in [*a.runs, world.no_org_run]
    )
    everything = json.loads(cli.run("rhesis-pipeline", "runs", "--json", env=env).stdout)
    assert len(everything) == 6  # the system role sees every run

    revoked = cli.run("rhesis-monitor", "revoke", a.runs[1], "--org", B, env=env)
    assert revoked.returncode == 1 and f"run {a.runs[1]}: no such run" in revoked.stdout
    assert not get_run(a.runs[1]).cancel_requested
    inspected = cli.run("rhesis-monitor", "inspect", a.runs[1], "--org", B, env=env)
    assert inspected.returncode == 2 and f"no test run with id {a.runs[1]}" in inspected.stderr

    checked = cli.run("rhesis-monitor", "check", "--max-hours", "0", "--org", B, "--json", env=env)
    assert checked.returncode == 1, checked.stderr
    assert [r["run_id"] for r in json.loads(checked.stdout)["runs"]] == b.runs
    status = json.loads(cli.run("rhesis-monitor", "status", "--org", B, "--json", env=env).stdout)
    assert [r["run_id"] for r in status["runs"]["active"]] == b.runs
    by_status = status["runs"]["by_status"]
    assert (by_status["IN_PROGRESS"], by_status["QUEUED"], sum(by_status.values())) == (
        1,
        1,
        2,
    )  # of 6

    empty = cli.run("rhesis-pipeline", "runs", "--org", " ", env=env)
    assert empty.returncode == 2 and "--org" in empty.stderr and "must not be empty" in empty.stderr


# -- the migration --------------------------------------------------------------------------


def _policies() -> list:
    with db.connect() as conn:
        return conn.execute(
            text(
                "SELECT schemaname, tablename, policyname FROM pg_policies "
                "WHERE schemaname IN ('rhesis', 'dramatiq') ORDER BY 1, 2"
            )
        ).all()


def test_downgrade_removes_policies_and_grants_and_runs_from_before_keep_working(
    web_user, database_url
):
    assert len(_policies()) == 4
    migrate.downgrade("0004")
    assert _policies() == []
    assert (
        scalar(
            "SELECT bool_or(relrowsecurity) FROM pg_class WHERE relname IN ('test_runs', 'test_results', 'queue', 'claims')"
        )
        is False
    )
    assert (
        scalar("SELECT has_table_privilege('rhesis_tenant', 'rhesis.test_runs', 'SELECT')") is False
    )
    # Other databases on the server (the template of this one) still use the role: kept.
    assert scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'rhesis_tenant'") == 1

    # A run stored before the migration (written as the schema of 0004 takes it) ...
    old = str(uuid.uuid4())
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rhesis.test_runs (id, organization_id, name, executor, total)"
                " VALUES (:id, :org, 'old', '{}', 1);"
                " INSERT INTO rhesis.test_results (run_id, test_id, position, test, message_id)"
                " VALUES (:id, 'x', 0, '{}', gen_random_uuid())"
            ),
            {"id": old, "org": B},
        )
    assert migrate.upgrade() == ("0004", migrate.head_revision())
    # ... is its organization's, and still the system role's.
    assert get_run(old).organization_id == B
    with tenant_cursor(web_user, B) as cur:
        cur.execute("SELECT id::text FROM rhesis.test_runs")
        assert [r[0] for r in cur.fetchall()] == [old]


def test_the_tables_owner_sees_everything_and_may_act_as_a_tenant(pg_server, database_url):
    # A deployment whose system role is not a superuser: it owns its database, migrates
    # it (and is granted rhesis_tenant by the migration on Postgres 15; from 16 on,
    # CREATEROLE no longer lets a role grant itself a role it does not administer, so the
    # migration warns with the hint and a superuser grants it once, as the README says),
    # and is not subject to the policies (ENABLE, not FORCE, row-level security).
    owner = f"own_{uuid.uuid4().hex[:12]}"
    name = f"rhesis_own_{uuid.uuid4().hex[:10]}"
    conn = admin(pg_server)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
            cur.execute("SHOW server_version_num")
            if int(cur.fetchone()[0]) >= 160000:
                cur.execute(sql.SQL("GRANT rhesis_tenant TO {}").format(sql.Identifier(owner)))
        url = (
            make_url(pg_server.url(name)).set(username=owner).render_as_string(hide_password=False)
        )
        _use(url)
        migrate.upgrade()
        assert scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        assert scalar("SELECT pg_has_role(current_user, 'rhesis_tenant', 'MEMBER')") is True
        a = launch_test_run([{"id": "x"}], executor=EXECUTOR, organization_id=A)  # COPY
        b = launch_test_run([{"id": "x"}], executor=EXECUTOR, organization_id=B)
        assert {r.id for r in recent_runs()} == {a, b}
        assert {r.id for r in recent_runs(organization_id=B)} == {b}
        with tenancy.begin(B) as tenant:
            b2 = launch_test_run(
                [{"id": "y"}], executor=EXECUTOR, organization_id=B, session=tenant
            )  # INSERT
        assert len(get_results(b2, organization_id=B)) == 1
        migrate.downgrade("0004")  # never fails because of the other databases
        engine.dispose()
    finally:
        _use(database_url)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        conn.close()
        drop_role(pg_server, owner)
