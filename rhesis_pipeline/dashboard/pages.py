"""The dashboard's pages (GET, HTML): ``/`` overview, ``/runs`` (filters, keyset pages),
``/runs/{run_id}`` (one run: summary, duration histogram, tests with verdicts, messages,
callback), ``/runs/{run_id}/compare`` (the run against another: what changed),
``/workers``, ``/queues``.

Each is a plain function of the :class:`~.state.Dashboard` and the request, run in a
worker thread (it reads the database): :func:`.app.create_app` wraps it with
:meth:`~.state.Dashboard.threaded`. ``run_id`` in a URL is the run's UUID or a unique
prefix of at least 8 hex digits.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from rhesis_pipeline.dashboard import data
from rhesis_pipeline.dashboard.state import Dashboard
from rhesis_pipeline.monitor.status import RUN_STATUSES
from rhesis_pipeline.runs.diff import HEADINGS


def overview(dashboard: Dashboard, request: Request) -> Response:
    """The system's status, its warnings, and the live progress of active runs."""
    organization = dashboard.organization(request)
    current = data.overview(organization)
    return dashboard.render(
        request,
        "overview.html",
        status=current,
        snapshot=current.snapshot,
        active=data.active_runs(organization),
    )


def runs_list(dashboard: Dashboard, request: Request) -> Response:
    """A page of runs, newest first, filtered by ``status``, ``org`` and ``name``;
    ``before`` is the cursor of the next page."""
    filters = data.RunFilters.parse(request.query_params)
    rows, cursor = data.runs_page(filters, dashboard.organization(request))
    params = {"status": filters.status, "org": filters.organization, "name": filters.name}
    return dashboard.render(
        request,
        "runs.html",
        rows=rows,
        filters=filters,
        params=params,
        next_params={**params, "before": cursor} if cursor else None,
        statuses=RUN_STATUSES,
    )


def run_detail(dashboard: Dashboard, request: Request) -> Response:
    """One run; ``filter=failed`` lists only the tests that did not pass, ``after`` is
    the position after which the page of tests starts."""
    organization = dashboard.organization(request)
    run_id = data.resolve_run_id(request.path_params["run_id"], organization)
    only_failed = request.query_params.get("filter") == "failed"
    try:
        after = int(request.query_params.get("after") or -1)
    except ValueError:
        raise data.BadRequest("after must be a test position (a whole number)") from None
    page = data.run_page(run_id, organization, only_failed=only_failed, after=after)
    return dashboard.render(
        request, "run.html", page=page, run=page.inspection.run, only_failed=only_failed
    )


def compare(dashboard: Dashboard, request: Request) -> Response:
    """The run against run ``with`` (its id or a prefix; absent or empty: the previous run
    of the same name): regressions, fixes, other changes, tests only in one run, and per
    metric the change of mean score and pass rate (:mod:`rhesis_pipeline.runs.diff`). A
    GET page: it changes nothing."""
    organization = dashboard.organization(request)
    run_b = data.resolve_run_id(request.path_params["run_id"], organization)
    baseline = (request.query_params.get("with") or "").strip() or None
    page = data.compare_page(run_b, baseline, organization)
    return dashboard.render(
        request, "compare.html", page=page, run=page.run, asked=baseline or "", headings=HEADINGS
    )


def workers(dashboard: Dashboard, request: Request) -> Response:
    """Live, stopped and dead workers with what each is running."""
    snapshot = data.overview(dashboard.organization(request)).snapshot
    return dashboard.render(request, "workers.html", snapshot=snapshot)


def queues(dashboard: Dashboard, request: Request) -> Response:
    """Messages waiting and running per queue, and the load of each organization."""
    current = data.overview(dashboard.organization(request))
    return dashboard.render(request, "queues.html", snapshot=current.snapshot, status=current)
