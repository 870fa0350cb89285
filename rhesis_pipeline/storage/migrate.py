"""Schema migrations (Alembic), run by ``rhesis-pipeline migrate``.

The scripts live in the repository's top-level ``migrations/`` folder, which is
installed as the package ``rhesis_pipeline.migrations``; Alembic is configured here in
code, so no ``alembic.ini`` has to be found in the working directory.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, TextIO

from rhesis_pipeline.errors import NotMigrated
from rhesis_pipeline.settings import redact_url
from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.driver_errors import translate_errors
from rhesis_pipeline.storage.queries import Q

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

#: Schema of the pipeline's own tables and of its Alembic version table.
SCHEMA = "rhesis"
#: Alembic's version table, kept in our schema so it never collides with the host
#: application's own ``public.alembic_version``.
VERSION_TABLE = "alembic_version"


def script_location() -> str:
    """The folder of the migration scripts (the installed ``rhesis_pipeline.migrations``)."""
    return str(resources.files("rhesis_pipeline.migrations"))


def alembic_config(*, stdout: TextIO | None = None) -> Config:
    """Alembic's configuration, in code (no ``alembic.ini``); output to *stdout* if given."""
    from alembic.config import Config

    cfg = Config(stdout=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", script_location())
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of this version's migration scripts."""
    head: str | None = _script().get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def known_revisions() -> set[str]:
    """Every revision of this version's migration scripts."""
    return {s.revision for s in _script().walk_revisions()}


def upgrade(target: str = "head") -> tuple[str | None, str]:
    """Upgrade the configured database to *target*; returns (revision before, after)."""
    from alembic import command

    with translate_errors(), engine.get().connect() as conn:
        before = current_revision(conn)
        conn.rollback()
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        after = current_revision(conn)
        conn.rollback()
    return before, after or ""


def downgrade(target: str) -> None:
    """Downgrade the configured database to *target* (``base`` removes everything)."""
    from alembic import command

    with translate_errors(), engine.get().connect() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)


def upgrade_sql(target: str = "head") -> str:
    """The SQL of an upgrade from nothing to *target*, without connecting."""
    from alembic import command

    out = io.StringIO()
    cfg = alembic_config(stdout=out)
    cfg.output_buffer = out
    command.upgrade(cfg, target, sql=True)
    return out.getvalue()


def current_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at, or None if never migrated."""
    if not conn.execute(Q["schema_version_table_exists"]).scalar():
        return None
    return conn.execute(Q["schema_version"]).scalar()


def check_migrated() -> None:
    """Raise NotMigrated, naming the fix, unless the database is at this version's head."""
    with db.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    where = redact_url(engine.database_url())
    if current is None:
        raise NotMigrated(
            f"database {where} is not migrated: run `rhesis-pipeline migrate` "
            f"(or the Procfile's release step); it has no schema revision, this version "
            f"needs {head}"
        )
    if current != head:
        if current in known_revisions():
            raise NotMigrated(
                f"database {where} is at revision {current}, this version needs {head}: "
                "run `rhesis-pipeline migrate`"
            )
        raise NotMigrated(
            f"database {where} is at revision {current}, which this version of rhesis-pipeline "
            "does not know (it was migrated by a newer release): upgrade rhesis-pipeline"
        )
