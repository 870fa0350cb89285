"""Schema migrations (Alembic), run by ``rhesis-pipeline migrate``.

The scripts live in the repository's top-level ``migrations/`` folder, which is
installed as the package ``rhesis_pipeline.migrations``; Alembic is configured here in
code, so no ``alembic.ini`` has to be found in the working directory.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config


def script_location() -> str:
    return str(resources.files("rhesis_pipeline.migrations"))


def alembic_config(*, stdout=None) -> Config:
    from alembic.config import Config

    cfg = Config(stdout=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", script_location())
    return cfg


@lru_cache(maxsize=1)
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def known_revisions() -> set[str]:
    return {s.revision for s in _script().walk_revisions()}


def upgrade(target: str = "head") -> tuple[str | None, str]:
    """Upgrade the configured database to *target*; returns (revision before, after)."""
    from alembic import command

    from . import db

    with db.translate_errors(), db.engine().connect() as conn:
        before = db.current_revision(conn)
        conn.rollback()
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        after = db.current_revision(conn)
        conn.rollback()
    return before, after or ""


def downgrade(target: str) -> None:
    """Downgrade the configured database to *target* (``base`` removes everything)."""
    from alembic import command

    from . import db

    with db.translate_errors(), db.engine().connect() as conn:
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
