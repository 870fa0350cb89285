"""Migrations on a real database: up/down/up, idempotence, and agreement with dramatiq-pg."""

import psycopg2
from dramatiq_pg import generate_init_sql
from sqlalchemy.engine import make_url

from rhesis_pipeline.settings import libpq_url
from rhesis_pipeline.storage import db, migrate

from .support import cli

#: Everything that defines the dramatiq schema, one comparable row per object.
CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, udt_schema, udt_name,
               is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'dramatiq'
        ORDER BY table_name, ordinal_position""",
    "enums": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'dramatiq'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'dramatiq' ORDER BY 1""",
    "constraints": """
        SELECT c.conname, c.contype, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'dramatiq' ORDER BY 1""",
    "relations": """
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'dramatiq' ORDER BY 1""",
}


def catalog(url: str) -> dict:
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn.cursor() as cur:
            out = {}
            for name, query in CATALOG_QUERIES.items():
                cur.execute(query)
                out[name] = cur.fetchall()
            return out
    finally:
        conn.close()


def execute(url: str, sql: str) -> None:
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def tables(url: str, schema: str) -> set[str]:
    conn = psycopg2.connect(libpq_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def test_upgrade_downgrade_upgrade(empty_database_url):
    before, after = migrate.upgrade()
    assert (before, after) == (None, migrate.head_revision())
    assert "queue" in tables(empty_database_url, "dramatiq")

    migrate.downgrade("base")
    assert tables(empty_database_url, "dramatiq") == set()
    with db.connect() as conn:
        assert migrate.current_revision(conn) is None

    assert migrate.upgrade()[1] == migrate.head_revision()
    assert "queue" in tables(empty_database_url, "dramatiq")


def test_migrating_twice_is_harmless(empty_database_url):
    migrate.upgrade()
    execute(
        empty_database_url,
        "INSERT INTO dramatiq.queue (message_id, queue_name, state, message) "
        "VALUES (gen_random_uuid(), 'q', 'queued', '{}')",
    )
    before, after = migrate.upgrade()
    assert before == after == migrate.head_revision()
    conn = psycopg2.connect(libpq_url(empty_database_url))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dramatiq.queue")
        assert cur.fetchone()[0] == 1  # nothing lost
    conn.close()


def test_migrated_queue_schema_is_dramatiq_pg_schema_sql_plus_our_indexes(
    pg_server, empty_database_url
):
    # Given: one database made by dramatiq-pg's own schema.sql, one by our migrations.
    name = f"{make_url(empty_database_url).database}_ref"
    reference = pg_server.create(name)
    try:
        execute(reference, generate_init_sql())
        migrate.upgrade()
        # Then: the dramatiq schemas are identical, object by object, except for the
        # indexes of our own that claims need (a superset of dramatiq-pg's).
        ours, theirs = catalog(empty_database_url), catalog(reference)
        assert theirs["columns"], "reference schema is empty: the comparison would prove nothing"
        extra = {"queue_waiting_by_organization", "queue_claimed_by_organization", "queue_claim"}
        assert set(theirs["indexes"]) <= set(ours["indexes"])
        assert {name for name, _ in set(ours["indexes"]) - set(theirs["indexes"])} == extra
        assert {name for name, _ in set(ours["relations"]) - set(theirs["relations"])} == extra
        for kind in ("columns", "enums", "constraints"):
            assert ours[kind] == theirs[kind], kind
    finally:
        pg_server.drop(name)


def test_a_database_initialised_by_dramatiq_pg_is_adopted(empty_database_url):
    execute(empty_database_url, generate_init_sql())
    execute(
        empty_database_url,
        "INSERT INTO dramatiq.queue (message_id, queue_name, state, message) "
        "VALUES (gen_random_uuid(), 'q', 'queued', '{}')",
    )
    assert migrate.upgrade()[1] == migrate.head_revision()
    conn = psycopg2.connect(libpq_url(empty_database_url))
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dramatiq.queue")
        assert cur.fetchone()[0] == 1
    conn.close()


def test_version_table_lives_in_the_rhesis_schema(empty_database_url):
    migrate.upgrade()
    assert "alembic_version" in tables(empty_database_url, "rhesis")
    assert "alembic_version" not in tables(empty_database_url, "public")


def test_sql_mode_prints_the_schema_without_connecting():
    # A URL nothing listens on: --sql must not even try it.
    out = cli.run(
        "rhesis-pipeline",
        "migrate",
        "--sql",
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE IF NOT EXISTS dramatiq.queue" in out.stdout
    assert "INSERT INTO rhesis.alembic_version" in out.stdout
