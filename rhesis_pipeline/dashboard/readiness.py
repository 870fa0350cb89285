"""``GET /readyz``: the dashboard's readiness probe, open without the token.

200 ``ready`` when the dashboard answers and ``SELECT 1`` reaches the database within
one second (:func:`rhesis_pipeline.storage.ping.reaches`), else 503 with one line saying
why. A plain function: Starlette runs it in its thread pool, never on the event loop,
and outside the dashboard's database slots (:mod:`.state`), so a busy dashboard is
still ready and a probe never queues behind page loads.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from rhesis_pipeline.storage import ping

#: How long the database has to answer, in seconds (well under a probe's timeout).
READY_TIMEOUT_S = 1.0


def readyz(request: Request) -> Response:
    """200 when the database answers within READY_TIMEOUT_S, else 503 (one line)."""
    problem = ping.reaches(READY_TIMEOUT_S)
    if problem is None:
        return PlainTextResponse("ready\n")
    return PlainTextResponse(f"not ready: {problem}\n", status_code=503)
