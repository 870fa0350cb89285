"""Alembic environment of rhesis-pipeline.

Run through ``rhesis-pipeline migrate`` (see rhesis_pipeline/storage/migrate.py), which passes
either a live connection (``config.attributes["connection"]``) or offline mode for
``--sql``. The version table lives in the ``rhesis`` schema, so it never collides with a
host application's own Alembic history in ``public``. One migration runs at a time per
database: a session advisory lock serialises concurrent ``migrate`` calls (two release
steps starting together).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from rhesis_pipeline.storage.migrate import SCHEMA, VERSION_TABLE

#: Key of the advisory lock held while migrating (arbitrary, fixed, project-specific).
MIGRATION_LOCK_KEY = 0x52485349_0001  # "RHSI" + 1

config = context.config


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        version_table_schema=SCHEMA,
        version_table=VERSION_TABLE,
        literal_binds=True,
        transactional_ddl=True,
    )
    context.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    try:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.commit()
        context.configure(
            connection=connection,
            version_table_schema=SCHEMA,
            version_table=VERSION_TABLE,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
