"""Does the database answer, within a deadline? (The dashboard's readiness, ``/readyz``.)

A readiness probe must answer in well under its timeout whatever the database does: a
server that is gone, unroutable (a failover whose address answers nothing) or too busy
to take a connection. :func:`reaches` runs ``SELECT 1`` on a connection of its own, not
one of the process's pool (a dashboard whose pooled connections are all busy still
reaches the database), in one of two threads kept for it, and waits at most
*timeout_s* for the answer. The attempt itself is bounded too (2 s to connect, libpq's
shortest timeout, and a statement timeout of *timeout_s*), so abandoned attempts never
pile up.
"""

from __future__ import annotations

import concurrent.futures
import logging

from rhesis_pipeline.settings import libpq_url
from rhesis_pipeline.storage import engine, queries

logger = logging.getLogger(__name__)

#: Threads that run the pings: two, so that one slow attempt never makes the next wait.
_PINGERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="rhesis-ping")
#: libpq's shortest connect timeout, in seconds (a value of 1 is taken as 2).
CONNECT_TIMEOUT_S = 2


def _select_one(timeout_s: float) -> None:
    import psycopg2

    conn = psycopg2.connect(
        libpq_url(engine.database_url()),
        connect_timeout=CONNECT_TIMEOUT_S,
        options=f"-c statement_timeout={max(1, int(timeout_s * 1000))}",
        application_name="rhesis-pipeline:readyz",
    )
    try:
        with conn.cursor() as cur:
            cur.execute(queries.pyformat("ping"))
            cur.fetchone()
    finally:
        conn.close()


def reaches(timeout_s: float = 1.0) -> str | None:
    """None when ``SELECT 1`` came back within *timeout_s* seconds, else one line saying
    why not (the driver's first line, or the deadline)."""
    future = _PINGERS.submit(_select_one, timeout_s)
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return f"the database did not answer SELECT 1 within {timeout_s:g} s"
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return f"the database cannot be reached: {lines[0] if lines else type(exc).__name__}"
    return None
