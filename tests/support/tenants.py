"""Database roles for tenant tests: a web backend's LOGIN user granted rhesis_tenant.

Roles belong to the whole server, so each test makes one with a random name and drops it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

from rhesis_pipeline.settings import libpq_url


def admin(pg_server):
    conn = psycopg2.connect(libpq_url(pg_server.admin_url))
    conn.autocommit = True
    return conn


def drop_role(pg_server, role: str) -> None:
    conn = admin(pg_server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    finally:
        conn.close()


def web_user(pg_server, database_url: str) -> Iterator[str]:
    """URL of *database_url* as a fresh LOGIN role (not a superuser) granted
    rhesis_tenant; the role is dropped afterwards (generator: use as a fixture body)."""
    role = f"app_{uuid.uuid4().hex[:12]}"
    conn = admin(pg_server)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
            cur.execute(sql.SQL("GRANT rhesis_tenant TO {}").format(sql.Identifier(role)))
    finally:
        conn.close()
    try:
        yield make_url(database_url).set(username=role).render_as_string(hide_password=False)
    finally:
        drop_role(pg_server, role)
