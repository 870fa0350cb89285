"""Tenant isolation enforced by Postgres: the role ``rhesis_tenant`` and row-level security.

Two kinds of sessions use the pipeline's tables:

* the **system role** — the role that runs this migration and owns the tables (the one in
  ``DATABASE_URL`` of workers, scheduler, ``migrate`` and ``rhesis-monitor``). Row-level
  security is ENABLEd, not FORCEd, so it does not apply to the tables' owner (nor to a
  superuser): the system role sees every row, as it must to claim, rescue, expire and
  purge any organization's work. That is safe because the role decides, not the
  ``app.current_organization`` setting (which any session may set): only the processes the
  operator runs hold the system role's credentials, and they never execute a tenant's
  queries on its behalf except through ``rhesis_tenant`` (:mod:`rhesis_pipeline.storage.tenancy`).
* **rhesis_tenant** (NOLOGIN): granted to a web backend's database user (and to the
  migrating role, so that operators and the read API can act as a tenant with
  ``SET LOCAL ROLE rhesis_tenant``). Its sessions see and change only the rows of the
  organization in ``app.current_organization``, and nothing when that is unset or empty
  (fail closed: ``NULLIF(…, '')`` is NULL, and ``x = NULL`` is never true). WITH CHECK
  clauses stop it from inserting or moving a row into another organization. It may
  launch, read and revoke runs; it has no access to ``rhesis.workers``,
  ``rhesis.rate_limits``, ``rhesis.alembic_version`` or the worker lock sequence
  (maintenance is not a tenant's business).

Policies (one per table, for every command; the grants decide which commands):

* ``rhesis.test_runs``: SELECT, INSERT, UPDATE where ``organization_id`` is the session's.
  A run with no organization is seen by the system role only.
* ``rhesis.test_results``: SELECT, INSERT, UPDATE of the results of those runs.
* ``dramatiq.queue``: SELECT, INSERT, UPDATE, DELETE of messages whose
  ``options.tenant.organization_id`` is the session's (members carry it from launch,
  callbacks get it from their run's row).
* ``rhesis.claims``: SELECT and DELETE only so that revocation's outcome statement
  (``record_outcomes``) can be planned; the policy shows and deletes nothing.

``rhesis_tenant`` is created only if absent: roles belong to the whole server, and
every database on it that is migrated shares it. Downgrading drops the policies,
disables row-level security, revokes the grants, and drops the role only if nothing
else on the server still depends on it (another database's grants, a member that owns
objects): a downgrade never fails because of other databases.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The organization a session acts for: NULL when unset or empty, which matches no row.
ORG = "NULLIF(current_setting('app.current_organization', true), '')"

#: (table, privileges, USING/WITH CHECK expression) of each table a tenant may use.
POLICIES = (
    ("rhesis.test_runs", "SELECT, INSERT, UPDATE", f"organization_id = {ORG}"),
    (
        "rhesis.test_results",
        "SELECT, INSERT, UPDATE",
        f"run_id IN (SELECT u.id FROM rhesis.test_runs u WHERE u.organization_id = {ORG})",
    ),
    (
        "dramatiq.queue",
        "SELECT, INSERT, UPDATE, DELETE",
        f"(message->'options'->'tenant'->>'organization_id') = {ORG}",
    ),
    ("rhesis.claims", "SELECT, DELETE", "false"),
)

POLICY = "tenant_isolation"


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rhesis_tenant') THEN
                CREATE ROLE rhesis_tenant NOLOGIN;
            END IF;
        EXCEPTION
            -- Another database on this server created it meanwhile.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role rhesis_tenant does not exist and % may not create it',
                    current_user
                USING HINT = 'create it once as a superuser: CREATE ROLE rhesis_tenant '
                             'NOLOGIN, then migrate again';
        END
        $$
        """
    )
    # The system role may act as a tenant (SET LOCAL ROLE rhesis_tenant); granted once
    # (a superuser is a member of every role already).
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, 'rhesis_tenant', 'MEMBER') THEN
                GRANT rhesis_tenant TO CURRENT_USER;
            END IF;
        EXCEPTION
            -- Only acting as a tenant needs it; everything else works without.
            WHEN insufficient_privilege THEN
                RAISE WARNING '% may not grant itself rhesis_tenant: %', current_user, SQLERRM
                USING HINT = 'as a superuser: GRANT rhesis_tenant TO ' || current_user;
        END
        $$
        """
    )
    op.execute("GRANT USAGE ON SCHEMA rhesis, dramatiq TO rhesis_tenant")
    for table, privileges, condition in POLICIES:
        op.execute(f"GRANT {privileges} ON {table} TO rhesis_tenant")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} FOR ALL TO rhesis_tenant "
            f"USING ({condition}) WITH CHECK ({condition})"
        )


def downgrade() -> None:
    for table, privileges, _ in reversed(POLICIES):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE {privileges} ON {table} FROM rhesis_tenant")
    op.execute("REVOKE USAGE ON SCHEMA rhesis, dramatiq FROM rhesis_tenant")
    op.execute(
        """
        DO $$
        BEGIN
            DROP ROLE IF EXISTS rhesis_tenant;
        EXCEPTION
            -- Still used elsewhere on the server (another database's grants), or this
            -- role may not drop roles: leave it.
            WHEN dependent_objects_still_exist OR insufficient_privilege THEN
                RAISE NOTICE 'role rhesis_tenant kept: %', SQLERRM;
        END
        $$
        """
    )
