"""The dashboard's machine-readable routes: ``/api/active-runs`` (JSON, polled every
second by the overview's progress bars, ``static/live.js``) and ``/metrics`` (the
Prometheus exposition of :mod:`rhesis_pipeline.monitor.prometheus`). Plain functions run
in a worker thread, like the pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rhesis_pipeline.dashboard import data
from rhesis_pipeline.dashboard.state import Dashboard
from rhesis_pipeline.monitor.prometheus import exposition


def active_runs(dashboard: Dashboard, request: Request) -> Response:
    """``{"runs": [...]}``: the queued and running runs, newest first, with their counts
    and percent done (see :func:`.data.active_runs`)."""
    return JSONResponse({"runs": data.active_runs(dashboard.organization(request))})


def metrics(dashboard: Dashboard, request: Request) -> Response:
    """The metrics in Prometheus' text format, as the request's organization sees them."""
    body, content_type = exposition(dashboard.organization(request))
    return Response(body, media_type=content_type)
